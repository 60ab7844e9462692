/* version.h: the one place the version is written. */
#ifndef SOCKLAB_VERSION_H
#define SOCKLAB_VERSION_H
#define SOCKLAB_VERSION "0.1.0"
#endif
