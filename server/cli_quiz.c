/* cli_quiz.c: `socklab run LAB --ask` poses the lab's questions before the run and grades them after; `socklab grade` grades a recorded run. */
#include "cli_quiz.h"

#include <stdlib.h>
#include <string.h>

#include "i18n.h"
#include "quiz/quiz.h"

/* The largest events file `socklab grade` reads. */
#define GRADE_EVENTS_MAX (256u * 1024 * 1024)

static char *text_of(const char *lang, const char *lab, const char *qid, const char *sub)
{
	char key[200];
	char *t;

	snprintf(key, sizeof key, "quiz.%s.%s%s%s", lab, qid, sub ? "." : "", sub ? sub : "");
	t = i18n_text(lang, key, NULL);
	return t ? t : strdup(key);
}

static void print_question(FILE *out, const char *lang, const char *lab,
			   const struct quiz_question *q)
{
	char *t = text_of(lang, lab, q->id, NULL);
	const char *const *c;

	fprintf(out, "\n%s\n", t);
	free(t);
	if (q->kind == QUIZ_CHOICE) {
		for (c = q->choices; *c; c++) {
			char sub[80];
			snprintf(sub, sizeof sub, "c.%s", *c);
			t = text_of(lang, lab, q->id, sub);
			fprintf(out, "  %-9s %s\n", *c, t);
			free(t);
		}
		fprintf(out, "answer (one of the words on the left, empty to skip): ");
	} else if (q->kind == QUIZ_PICK) {
		fprintf(out, "answer (a %s number, %lld..%lld, empty to skip): ", q->pick, q->min,
			q->max);
	} else {
		fprintf(out, "answer (%lld..%lld%s%s, empty to skip): ", q->min, q->max,
			q->unit ? " " : "", q->unit ? q->unit : "");
	}
	fflush(out);
}

int cli_quiz_ask(struct cli_quiz *qz, const struct lab_desc *lab, const struct lab_params *p,
		 FILE *in, FILE *out)
{
	const struct quiz_bank *b = quiz_bank_find(lab->name);
	json_t *params = lab_params_json(p);
	size_t i;
	int asked = 0;

	memset(qz, 0, sizeof *qz);
	qz->lab = lab;
	qz->answers = json_object();
	qz->events = json_array();
	qz->lang = i18n_lang_from_env(NULL);
	for (i = 0; b && i < b->n; i++) {
		const struct quiz_question *q = &b->q[i];
		char line[256], err[200];

		if (!quiz_applies(q, params))
			continue;
		if (!asked++)
			fprintf(out, "Predict, then check: %s asks before the run.\n", lab->name);
		for (;;) {
			json_t *a;
			size_t n;

			print_question(out, qz->lang, lab->name, q);
			if (!fgets(line, sizeof line, in)) {
				json_decref(params);
				return -1;
			}
			n = strcspn(line, "\r\n");
			line[n] = '\0';
			if (!n)
				break;
			a = quiz_parse_answer(q, line, err, sizeof err);
			if (a) {
				json_object_set_new(qz->answers, q->id, a);
				break;
			}
			fprintf(out, "%s\n", err);
		}
	}
	if (!asked)
		fprintf(out, "%s has no questions for these parameters.\n", lab->name);
	else
		fprintf(out, "\nRunning %s...\n", lab->name);
	json_decref(params);
	return 0;
}

int cli_quiz_sink(void *arg, const json_t *event, const char *line)
{
	struct cli_quiz *qz = arg;
	json_t *e = json_loads(line, 0, NULL);

	if (!e)
		return 0;
	json_array_append_new(qz->events, e);
	return 0;
}

static void print_value(FILE *out, const char *lang, const char *lab, const json_t *v,
			const char *qid)
{
	size_t i;
	json_t *x;

	if (json_is_integer(v)) {
		fprintf(out, "%lld", (long long)json_integer_value(v));
	} else if (json_is_string(v)) {
		char sub[80];
		char *t;
		snprintf(sub, sizeof sub, "c.%s", json_string_value(v));
		t = text_of(lang, lab, qid, sub);
		fprintf(out, "%s (%s)", json_string_value(v), t);
		free(t);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			fprintf(out, "%s#%lld", i ? ", " : "", (long long)json_integer_value(x));
	} else {
		fprintf(out, "-");
	}
}

static void print_verdicts(FILE *out, const char *lang, const char *lab, const json_t *verdicts)
{
	size_t i, j;
	json_t *v, *s;

	json_array_foreach(verdicts, i, v) {
		const char *qid = json_string_value(json_object_get(v, "q"));
		const char *res = json_string_value(json_object_get(v, "result"));
		char *t = text_of(lang, lab, qid, NULL);

		fprintf(out, "\n[%s] %s\n  your answer: ", res, t);
		free(t);
		print_value(out, lang, lab, json_object_get(v, "answer"), qid);
		fprintf(out, "\n  the run:     ");
		print_value(out, lang, lab, json_object_get(v, "truth"), qid);
		fprintf(out, "\n  why: %s\n",
			json_string_value(json_object_get(json_object_get(v, "why"), "text")));
		if (json_array_size(json_object_get(v, "evidence"))) {
			fprintf(out, "  evidence: events");
			json_array_foreach(json_object_get(v, "evidence"), j, s)
				fprintf(out, " %lld", (long long)json_integer_value(s));
			fprintf(out, "\n");
		}
	}
}

void cli_quiz_report(struct cli_quiz *qz, FILE *out)
{
	json_t *verdicts;

	if (!json_object_size(qz->answers))
		return;
	verdicts = quiz_grade(qz->lab->name, qz->answers, qz->events, qz->lang);
	fprintf(out, "\n--- predictions, checked against this run ---");
	print_verdicts(out, qz->lang, qz->lab->name, verdicts);
	json_decref(verdicts);
}

void cli_quiz_cleanup(struct cli_quiz *qz)
{
	json_decref(qz->answers);
	json_decref(qz->events);
	qz->answers = qz->events = NULL;
}

static void grade_usage(FILE *out)
{
	fprintf(out, "usage: socklab grade EVENTS.jsonl [-a QUESTION=ANSWER]... [--json]\n"
		     "  grades the answers against a recorded run (a bundle's events.jsonl or\n"
		     "  `socklab run LAB --json` output); without -a, says what the run shows for\n"
		     "  every question of its lab. `socklab labs --json` lists the questions.\n");
}

int cli_grade(int argc, char **argv)
{
	const char *path = NULL, *lab;
	json_t *events, *answers, *verdicts;
	int as_json = 0, i;
	char err[300];
	const char *lang = i18n_lang_from_env(NULL);

	answers = json_object();
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			as_json = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			grade_usage(stdout);
			json_decref(answers);
			return 0;
		} else if (!strcmp(argv[i], "-a") && i + 1 < argc) {
			i++;
			if (json_object_size(answers) >= QUIZ_ANSWERS_MAX) {
				fprintf(stderr, "socklab grade: at most %d answers\n", QUIZ_ANSWERS_MAX);
				json_decref(answers);
				return 2;
			}
			json_object_set_new(answers, argv[i], json_string(argv[i]));
		} else if (argv[i][0] != '-' && !path) {
			path = argv[i];
		} else {
			fprintf(stderr, "socklab grade: unknown option '%s'\n", argv[i]);
			grade_usage(stderr);
			json_decref(answers);
			return 2;
		}
	}
	if (!path) {
		grade_usage(stderr);
		json_decref(answers);
		return 2;
	}
	events = quiz_load_events(path, GRADE_EVENTS_MAX, err, sizeof err);
	if (!events) {
		fprintf(stderr, "socklab grade: %s\n", err);
		json_decref(answers);
		return 1;
	}
	lab = quiz_events_lab(events);
	{
		/* Each -a QID=ANSWER was kept whole: split and check it now the lab
		 * is known. */
		json_t *parsed = json_object();
		const char *k;
		json_t *v;
		void *tmp;
		json_object_foreach_safe(answers, tmp, k, v) {
			const char *kv = json_string_value(v);
			const char *eq = strchr(kv, '=');
			char qid[64];
			const struct quiz_question *q;
			json_t *a;

			if (!eq || (size_t)(eq - kv) >= sizeof qid) {
				fprintf(stderr, "socklab grade: -a wants QUESTION=ANSWER (got \"%.80s\")\n",
					kv);
				goto bad;
			}
			memcpy(qid, kv, (size_t)(eq - kv));
			qid[eq - kv] = '\0';
			q = quiz_find(lab, qid);
			if (!q) {
				fprintf(stderr, "socklab grade: lab %s has no question '%s'\n",
					lab ? lab : "?", qid);
				goto bad;
			}
			a = quiz_parse_answer(q, eq + 1, err, sizeof err);
			if (!a) {
				fprintf(stderr, "socklab grade: %s\n", err);
				goto bad;
			}
			json_object_set_new(parsed, qid, a);
			continue;
bad:
			json_decref(parsed);
			json_decref(answers);
			json_decref(events);
			return 2;
		}
		json_decref(answers);
		answers = parsed;
	}
	verdicts = quiz_grade(lab, json_object_size(answers) ? answers : NULL, events, lang);
	if (as_json) {
		char *s = json_dumps(verdicts, JSON_COMPACT);
		puts(s ? s : "[]");
		free(s);
	} else {
		printf("%s run %s", lab ? lab : "?",
		       json_string_value(json_object_get(json_array_get(events, 0), "run")));
		print_verdicts(stdout, lang, lab, verdicts);
	}
	json_decref(verdicts);
	json_decref(answers);
	json_decref(events);
	return 0;
}
