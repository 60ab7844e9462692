/* assets.h: the dashboard files compiled into the binary (see server/tools/embed.c). */
#ifndef SOCKLAB_ASSETS_H
#define SOCKLAB_ASSETS_H

#include <stddef.h>

struct asset {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
};

/* Every embedded file, terminated by an entry whose path is NULL. */
extern const struct asset assets[];

#endif
