/* serve.h: `socklab serve`: the HTTP + WebSocket server. */
#ifndef SOCKLAB_SERVE_H
#define SOCKLAB_SERVE_H

/* Parse serve flags, run the server until SIGINT/SIGTERM. Exit status: 0
 * after a clean shutdown, 2 on bad usage, 1 when it could not start. */
int serve_main(int argc, char **argv);

#endif
