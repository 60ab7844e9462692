/* unit.h: common includes for the cmocka unit tests (one binary per module). */
#ifndef SOCKLAB_UNIT_H
#define SOCKLAB_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#endif
