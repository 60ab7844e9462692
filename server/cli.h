/* cli.h: the terminal front ends: `socklab labs` and `socklab run`. */
#ifndef SOCKLAB_CLI_H
#define SOCKLAB_CLI_H

/* Each returns the process exit status: 0 ok, 1 the lab failed, 2 bad usage. */
int cli_labs(int argc, char **argv);
int cli_run(int argc, char **argv);

#endif
