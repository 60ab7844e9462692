/* cli_quiz.h: the terminal's "predict, then check": `socklab run LAB --ask` and `socklab grade`. */
#ifndef SOCKLAB_CLI_QUIZ_H
#define SOCKLAB_CLI_QUIZ_H

#include <stdio.h>

#include <jansson.h>

#include "lab.h"

/* One --ask run: the answers given before it and the events it emitted. */
struct cli_quiz {
	const struct lab_desc *lab;
	json_t *answers; /* qid -> answer */
	json_t *events;  /* the run's events, in seq order */
	const char *lang;
};

/* Pose every question of lab that applies to p on out, reading answers
 * from in (an empty line skips a question; a bad answer is asked again,
 * naming the range). 0, or negative when in ended. */
int cli_quiz_ask(struct cli_quiz *qz, const struct lab_desc *lab, const struct lab_params *p,
		 FILE *in, FILE *out);
/* An event sink (labs/event.h) keeping the run's events in qz. */
int cli_quiz_sink(void *arg, const json_t *event, const char *line);
/* Grade the answers against the events and print the verdicts. */
void cli_quiz_report(struct cli_quiz *qz, FILE *out);
void cli_quiz_cleanup(struct cli_quiz *qz);

/* `socklab grade EVENTS.jsonl [-a QID=ANSWER]... [--json]`: 0 graded, 1 the
 * file cannot be read, 2 bad usage or a bad answer. */
int cli_grade(int argc, char **argv);

#endif
