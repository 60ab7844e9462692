/* lab_main.c: socklab-lab, the program each run of `socklab serve` executes:
 * the labs and `run` alone, linked without the server's libraries
 * (libwebsockets, libmicrohttpd and what they load), so a run starts in a
 * fraction of the time the server's binary takes. Same lab code, same
 * events: `socklab-lab run LAB ...` is `socklab run LAB ...`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: socklab-lab COMMAND [ARGS]\n"
		"\n"
		"The program `socklab serve` starts for each run (the server finds it beside\n"
		"its own binary). It has the lab commands of socklab only:\n"
		"\n"
		"  labs [--json]                      list the labs and their parameters\n"
		"  run LAB [-p KEY=VALUE]... [--json] run one lab in this terminal\n"
		"  version                            print the version\n"
		"  build-id                           print this build's identity\n");
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd || !strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(cmd ? stdout : stderr);
		return cmd ? 0 : 2;
	}
	if (!strcmp(cmd, "labs"))
		return cli_labs(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("socklab %s\n", SOCKLAB_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "build-id")) {
		printf("%s\n", socklab_build_id);
		return 0;
	}
	fprintf(stderr,
		"socklab-lab: unknown command '%s' (expected labs, run, version or build-id; "
		"the server is `socklab serve`)\n",
		cmd);
	usage(stderr);
	return 2;
}
