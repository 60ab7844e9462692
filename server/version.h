/* version.h: the one place the version is written. */
#ifndef SOCKLAB_VERSION_H
#define SOCKLAB_VERSION_H
#define SOCKLAB_VERSION "0.1.0"
/* This build's identity (a hash of its objects, build/buildid.c): the server
 * and the lab program beside it must share it (config_find_lab_exe). */
extern const char socklab_build_id[];
#endif
