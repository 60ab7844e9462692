/* serve.c: placeholder until the server lands. */
#include <stdio.h>

#include "serve.h"

int serve_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "socklab serve: not built yet\n");
	return 1;
}
