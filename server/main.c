/* main.c: socklab's entry point: dispatch to the labs, run and serve subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_quiz.h"
#include "health.h"
#include "serve.h"
#include "tcpstate/tcpstate.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: socklab COMMAND [ARGS]\n"
		"\n"
		"  labs [--json]                      list the labs and their parameters\n"
		"  run LAB [-p KEY=VALUE]... [--json] run one lab in this terminal\n"
		"  run LAB --ask                      predict first: answer the lab's questions,\n"
		"                                     then see them graded against the run\n"
		"  grade EVENTS.jsonl [-a Q=A]...     grade answers against a recorded run\n"
		"  serve [--listen ADDR] [--http-port N] [--ws-port N] [--data DIR] ...\n"
		"                                     serve the dashboard and the API\n"
		"  health [URL]                       is the server healthy? (exit 0 yes, 1 no)\n"
		"  cleanup                            remove the idle tracefs instances runs keep\n"
		"                                     for reuse (root)\n"
		"  version                            print the version\n"
		"\n"
		"`socklab COMMAND --help` explains each command's options.\n");
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
	if (!strcmp(cmd, "grade"))
		return cli_grade(argc - 1, argv + 1);
	if (!strcmp(cmd, "serve"))
		return serve_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "health"))
		return health_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "cleanup")) {
		if (argc > 2) {
			fprintf(stderr, "socklab cleanup: takes no arguments (got '%s')\n", argv[2]);
			return 2;
		}
		printf("socklab cleanup: removed %d idle tracefs instance(s)\n",
		       tcpst_trace_cleanup(1));
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("socklab %s\n", SOCKLAB_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "build-id")) {
		printf("%s\n", socklab_build_id);
		return 0;
	}
	fprintf(stderr, "socklab: unknown command '%s' (expected labs, run, grade, serve, health, cleanup or version)\n", cmd);
	usage(stderr);
	return 2;
}
