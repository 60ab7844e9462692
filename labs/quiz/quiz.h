/* quiz.h: "predict, then check": each lab's question bank and the pure functions that grade an answer against a run's events. */
#ifndef SOCKLAB_QUIZ_H
#define SOCKLAB_QUIZ_H

#include <stddef.h>

#include <jansson.h>

/*
 * A question is asked before a run and graded after it, from that run's
 * events only (the same events the student sees, live or replayed): a
 * question's rule reads the events and finds what actually happened (the
 * "truth"), the events that decided it (their seqs: the evidence) and an
 * explanation (a message id "quiz.LAB.QID.why.CASE" with parameters taken
 * from captured fields). Comparing an answer with the truth is the same for
 * every question of a kind. A run that cannot decide a question (its
 * capture is incomplete, it failed before the moment asked about) gives
 * "undecided" with the reason, never a guess.
 *
 * Everything here is pure and thread-agnostic: the CLI (`socklab run --ask`,
 * `socklab grade`), the HTTP thread (GET /api/runs/ID/grade) and the class
 * code (a reveal grades each student's answer against the class run) call
 * the same functions on the same events.
 */

enum quiz_kind {
	QUIZ_CHOICE, /* one of choices[] (an id; its text is quiz.LAB.QID.c.ID) */
	QUIZ_NUMBER, /* an integer within [min, max] */
	QUIZ_PICK,   /* a number the trace shows (pick names what: "segment" is a
		      * segment's number in the run, 1, 2, ...) */
};

/* What a run shows for one question. Filled by a rule; quiz_truth_cleanup
 * releases it. */
struct quiz_truth {
	int decided;        /* 0: the run cannot answer (why says why) */
	long long num;      /* QUIZ_NUMBER */
	const char *choice; /* QUIZ_CHOICE: one of the question's choices */
	long long picks[8]; /* QUIZ_PICK: the accepted numbers */
	int n_picks;
	json_t *evidence; /* array of event seqs (owned) */
	const char *why;  /* the CASE of quiz.LAB.QID.why.CASE */
	json_t *params;   /* the explanation's parameters (owned object) */
};

struct quiz_question {
	const char *id; /* [a-z_]+, unique within the lab */
	enum quiz_kind kind;
	const char *const *choices; /* QUIZ_CHOICE: NULL-terminated ids */
	long long min, max;         /* QUIZ_NUMBER, QUIZ_PICK */
	const char *unit;           /* QUIZ_NUMBER: "segments", ... or NULL */
	const char *pick;           /* QUIZ_PICK: "segment" */
	/* Asked only when parameter when_param (of the run about to start) is
	 * one of when_in (NULL-terminated) or, for an integer, at least
	 * when_min. NULL: always asked. */
	const char *when_param;
	const char *const *when_in;
	long long when_min;
	/* The rule: what the run's events (an array, in seq order) show. Fill t
	 * (already zeroed, evidence and params allocated). Returns 0, or
	 * negative only when out of memory. */
	int (*rule)(const json_t *events, struct quiz_truth *t);
};

struct quiz_bank {
	const char *lab;
	const struct quiz_question *q;
	size_t n;
};

/* Limits on what a client may send. */
#define QUIZ_ANSWER_MAX 64   /* bytes of one answer's text form */
#define QUIZ_ANSWERS_MAX 16  /* answers graded in one request */

/* The bank of lab, or NULL when the lab asks nothing. */
const struct quiz_bank *quiz_bank_find(const char *lab);

/* The question qid of lab, or NULL. */
const struct quiz_question *quiz_find(const char *lab, const char *qid);

/* New JSON array describing the bank of lab (id, kind, choices, min, max,
 * unit, pick, when): what /api/labs and `socklab labs --json` export with
 * the lab's schema. An empty array for a lab without questions. */
json_t *quiz_describe(const char *lab);

/* Whether q is asked of a run with these applied parameters (an object, as
 * in run.start's params; NULL: asked). */
int quiz_applies(const struct quiz_question *q, const json_t *params);

/* Parse an answer to q from its text form ("3", "client") or a JSON value
 * (integer or string) into a new JSON value (integer for a number or pick,
 * string for a choice). On a bad answer returns NULL and writes a message
 * naming the question and what is allowed into err. */
json_t *quiz_parse_answer(const struct quiz_question *q, const char *text, char *err,
			  size_t errlen);
json_t *quiz_answer_from_json(const struct quiz_question *q, const json_t *v, char *err,
			      size_t errlen);

/* Run q's rule on events. 0, or negative (out of memory). */
int quiz_truth_of(const struct quiz_question *q, const json_t *events, struct quiz_truth *t);
void quiz_truth_cleanup(struct quiz_truth *t);

/* "right", "wrong" or "undecided": answer (as quiz_parse_answer makes it)
 * against the truth. */
const char *quiz_compare(const struct quiz_question *q, const struct quiz_truth *t,
			 const json_t *answer);

/* New verdict object {q, kind, answer, truth, result, evidence, why:{key,
 * params, text}} for answer (may be NULL: the truth alone, result
 * "unanswered"). lab names the message ids; text is in lang. */
json_t *quiz_verdict(const char *lab, const struct quiz_question *q, const struct quiz_truth *t,
		     const json_t *answer, const char *lang);

/* Grade answers (an object qid -> parsed answer; NULL grades nothing but
 * tells every applicable question's truth) against events: a new array of
 * verdicts, one per question of the bank that applies to the run (its
 * run.start params) or was answered. */
json_t *quiz_grade(const char *lab, const json_t *answers, const json_t *events, const char *lang);

/* Read a run's events (JSON Lines) from path, at most max_bytes: a new
 * array. Lines of other event types are kept as they are. NULL on error,
 * with the reason in err. */
json_t *quiz_load_events(const char *path, size_t max_bytes, char *err, size_t errlen);

/* Parse a run's events sent by a client (JSON Lines, buf of len bytes, not
 * NUL-terminated): a new array. Every line must be a JSON object and at
 * most max_events lines are taken; the first must be run.start with a lab.
 * NULL on bad input, with the reason (naming the line) in err. */
json_t *quiz_parse_events(const char *buf, size_t len, size_t max_events, char *err,
			  size_t errlen);

/* The lab name of a run's events (their first event's "lab"), or NULL. */
const char *quiz_events_lab(const json_t *events);

/* ---- helpers for the rules (labs/quiz/quiz.c) ---- */

const char *quiz_ev_type(const json_t *e);
long long quiz_ev_seq(const json_t *e);
const char *quiz_str(const json_t *o, const char *key);
long long quiz_int(const json_t *o, const char *key, long long def);
/* The run.start params, or NULL. */
const json_t *quiz_run_params(const json_t *events);
/* The run.end event, or NULL (the run did not end). */
const json_t *quiz_run_end(const json_t *events);
/* 1 when the run ended with status ok; otherwise 0, with t's reason
 * "*run_not_ok" and its status (an unfinished run could still have made more
 * calls or segments: its counts decide nothing). */
int quiz_ended_ok(const json_t *events, struct quiz_truth *t);
/* Decide "which side ends in TIME_WAIT" from the first report of it seen on
 * each side (seen[0] the client's, seen[1] the server's, either NULL): the
 * choice, the evidence and the client_seq/server_seq parameters. */
void quiz_tw_sides(struct quiz_truth *t, const json_t *seen[2]);
void quiz_evidence(struct quiz_truth *t, const json_t *e);
/* A note of this key in the events, or NULL. */
const json_t *quiz_find_note(const json_t *events, const char *key);

#endif
