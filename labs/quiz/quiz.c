/* quiz.c: the question banks' registry, answer parsing, and grading a run's events (labs/quiz/quiz.h). */
#include "quiz/quiz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "i18n.h"

extern const struct quiz_bank quiz_bank_tcp_echo;
extern const struct quiz_bank quiz_bank_udp_ping;
extern const struct quiz_bank quiz_bank_handshake;
extern const struct quiz_bank quiz_bank_sticky;
extern const struct quiz_bank quiz_bank_syn_flood;
extern const struct quiz_bank quiz_bank_time_wait;
extern const struct quiz_bank quiz_bank_layers;
extern const struct quiz_bank quiz_bank_own;

static const struct quiz_bank *const banks[] = {
	&quiz_bank_tcp_echo,
	&quiz_bank_udp_ping,
	&quiz_bank_handshake,
	&quiz_bank_sticky,
	&quiz_bank_syn_flood,
	&quiz_bank_time_wait,
	&quiz_bank_layers,
	&quiz_bank_own,
	NULL,
};

static const char *const kind_names[] = {
	[QUIZ_CHOICE] = "choice",
	[QUIZ_NUMBER] = "number",
	[QUIZ_PICK] = "pick",
};

const struct quiz_bank *quiz_bank_find(const char *lab)
{
	size_t i;

	for (i = 0; lab && banks[i]; i++)
		if (!strcmp(banks[i]->lab, lab))
			return banks[i];
	return NULL;
}

const struct quiz_question *quiz_find(const char *lab, const char *qid)
{
	const struct quiz_bank *b = quiz_bank_find(lab);
	size_t i;

	for (i = 0; b && qid && i < b->n; i++)
		if (!strcmp(b->q[i].id, qid))
			return &b->q[i];
	return NULL;
}

static json_t *str_array(const char *const *s)
{
	json_t *a = json_array();

	while (a && s && *s)
		json_array_append_new(a, json_string(*s++));
	return a;
}

json_t *quiz_describe(const char *lab)
{
	const struct quiz_bank *b = quiz_bank_find(lab);
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && b && i < b->n; i++) {
		const struct quiz_question *q = &b->q[i];
		json_t *o = json_object();

		json_object_set_new(o, "id", json_string(q->id));
		json_object_set_new(o, "kind", json_string(kind_names[q->kind]));
		if (q->kind == QUIZ_CHOICE) {
			json_object_set_new(o, "choices", str_array(q->choices));
		} else {
			json_object_set_new(o, "min", json_integer(q->min));
			json_object_set_new(o, "max", json_integer(q->max));
		}
		if (q->unit)
			json_object_set_new(o, "unit", json_string(q->unit));
		if (q->pick)
			json_object_set_new(o, "pick", json_string(q->pick));
		if (q->when_param) {
			json_t *w = json_object();
			json_object_set_new(w, "param", json_string(q->when_param));
			if (q->when_in)
				json_object_set_new(w, "in", str_array(q->when_in));
			else
				json_object_set_new(w, "min", json_integer(q->when_min));
			json_object_set_new(o, "when", w);
		}
		json_array_append_new(a, o);
	}
	return a;
}

int quiz_applies(const struct quiz_question *q, const json_t *params)
{
	const json_t *v;
	const char *const *in;

	if (!q->when_param || !params)
		return 1;
	v = json_object_get(params, q->when_param);
	if (!v)
		return 1;
	if (!q->when_in)
		return json_is_integer(v) && json_integer_value(v) >= q->when_min;
	for (in = q->when_in; json_is_string(v) && *in; in++)
		if (!strcmp(*in, json_string_value(v)))
			return 1;
	return 0;
}

static json_t *parse_int(const struct quiz_question *q, const char *text, char *err,
			 size_t errlen)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (!*text || *end || errno || v < q->min || v > q->max) {
		snprintf(err, errlen, "answer to '%s' must be an integer %lld..%lld", q->id, q->min,
			 q->max);
		return NULL;
	}
	return json_integer(v);
}

json_t *quiz_parse_answer(const struct quiz_question *q, const char *text, char *err,
			  size_t errlen)
{
	const char *const *c;
	size_t n = text ? strlen(text) : 0;

	if (!text || n == 0 || n > QUIZ_ANSWER_MAX) {
		snprintf(err, errlen, "answer to '%s' must be 1..%d bytes", q->id, QUIZ_ANSWER_MAX);
		return NULL;
	}
	if (q->kind != QUIZ_CHOICE)
		return parse_int(q, text, err, errlen);
	for (c = q->choices; *c; c++)
		if (!strcmp(*c, text))
			return json_string(*c);
	{
		char list[256] = "";
		size_t off = 0;
		for (c = q->choices; *c; c++) {
			int w = snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "", *c);
			if (w < 0 || (size_t)w >= sizeof list - off)
				break;
			off += (size_t)w;
		}
		snprintf(err, errlen, "answer to '%s' must be one of: %s", q->id, list);
	}
	return NULL;
}

json_t *quiz_answer_from_json(const struct quiz_question *q, const json_t *v, char *err,
			      size_t errlen)
{
	char buf[32];

	if (json_is_string(v))
		return quiz_parse_answer(q, json_string_value(v), err, errlen);
	if (json_is_integer(v) && q->kind != QUIZ_CHOICE) {
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		return quiz_parse_answer(q, buf, err, errlen);
	}
	if (q->kind == QUIZ_CHOICE)
		snprintf(err, errlen, "answer to '%s' must be a string (one of its choices)", q->id);
	else
		snprintf(err, errlen, "answer to '%s' must be an integer %lld..%lld", q->id, q->min,
			 q->max);
	return NULL;
}

int quiz_truth_of(const struct quiz_question *q, const json_t *events, struct quiz_truth *t)
{
	memset(t, 0, sizeof *t);
	t->evidence = json_array();
	t->params = json_object();
	if (!t->evidence || !t->params)
		return -ENOMEM;
	if (!quiz_run_params(events)) {
		t->why = "*no_run";
		return 0;
	}
	return q->rule(events, t);
}

void quiz_truth_cleanup(struct quiz_truth *t)
{
	json_decref(t->evidence);
	json_decref(t->params);
	t->evidence = t->params = NULL;
}

const char *quiz_compare(const struct quiz_question *q, const struct quiz_truth *t,
			 const json_t *answer)
{
	int i;

	if (!t->decided)
		return "undecided";
	if (!answer)
		return "unanswered";
	switch (q->kind) {
	case QUIZ_CHOICE:
		return json_is_string(answer) && !strcmp(json_string_value(answer), t->choice)
			       ? "right"
			       : "wrong";
	case QUIZ_NUMBER:
		return json_is_integer(answer) && json_integer_value(answer) == t->num ? "right"
										       : "wrong";
	case QUIZ_PICK:
		for (i = 0; i < t->n_picks; i++)
			if (json_is_integer(answer) && json_integer_value(answer) == t->picks[i])
				return "right";
		return "wrong";
	}
	return "wrong";
}

static json_t *truth_json(const struct quiz_question *q, const struct quiz_truth *t)
{
	json_t *a;
	int i;

	if (!t->decided)
		return json_null();
	switch (q->kind) {
	case QUIZ_CHOICE:
		return json_string(t->choice);
	case QUIZ_NUMBER:
		return json_integer(t->num);
	case QUIZ_PICK:
		a = json_array();
		for (i = 0; a && i < t->n_picks; i++)
			json_array_append_new(a, json_integer(t->picks[i]));
		return a;
	}
	return json_null();
}

/* A run's status named in an explanation ("ok", "error", "cancelled",
 * "timeout", or "running" for one that has not ended) reads in the reader's
 * language: its companion status_key names the message run.status.STATUS
 * (labs/i18n.c and web/i18n.js look NAME_key up). */
static void status_key(const struct quiz_truth *t)
{
	static const char *const known[] = {"ok", "error", "cancelled", "timeout", "running", NULL};
	const char *st = json_string_value(json_object_get(t->params, "status"));
	const char *const *k;
	char id[64];

	for (k = known; st && *k; k++) {
		if (!strcmp(*k, st)) {
			snprintf(id, sizeof id, "run.status.%s", st);
			json_object_set_new(t->params, "status_key", json_string(id));
			return;
		}
	}
}

json_t *quiz_verdict(const char *lab, const struct quiz_question *q, const struct quiz_truth *t,
		     const json_t *answer, const char *lang)
{
	json_t *v = json_object(), *why = json_object();
	char key[160];
	char *text;

	if (!v || !why) {
		json_decref(v);
		json_decref(why);
		return NULL;
	}
	/* A why starting with '*' is one of every lab's: quiz.why.CASE. */
	if (t->why && t->why[0] == '*')
		snprintf(key, sizeof key, "quiz.why.%s", t->why + 1);
	else
		snprintf(key, sizeof key, "quiz.%s.%s.why.%s", lab, q->id, t->why ? t->why : "none");
	json_object_set_new(v, "q", json_string(q->id));
	json_object_set_new(v, "kind", json_string(kind_names[q->kind]));
	json_object_set_new(v, "answer", answer ? json_deep_copy(answer) : json_null());
	json_object_set_new(v, "truth", truth_json(q, t));
	json_object_set_new(v, "result", json_string(quiz_compare(q, t, answer)));
	json_object_set_new(v, "evidence", json_deep_copy(t->evidence));
	json_object_set_new(why, "key", json_string(key));
	status_key(t);
	json_object_set_new(why, "params", json_deep_copy(t->params));
	text = i18n_text(lang ? lang : I18N_DEFAULT, key, t->params);
	json_object_set_new(why, "text", json_string(text ? text : key));
	free(text);
	json_object_set_new(v, "why", why);
	return v;
}

json_t *quiz_grade(const char *lab, const json_t *answers, const json_t *events, const char *lang)
{
	const struct quiz_bank *b = quiz_bank_find(lab);
	const json_t *params = quiz_run_params(events);
	json_t *out = json_array();
	size_t i;

	for (i = 0; out && b && i < b->n; i++) {
		const struct quiz_question *q = &b->q[i];
		const json_t *a = answers ? json_object_get(answers, q->id) : NULL;
		struct quiz_truth t;

		if (!a && !quiz_applies(q, params))
			continue;
		if (quiz_truth_of(q, events, &t) < 0) {
			quiz_truth_cleanup(&t);
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, quiz_verdict(lab, q, &t, a, lang));
		quiz_truth_cleanup(&t);
	}
	return out;
}

json_t *quiz_load_events(const char *path, size_t max_bytes, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	json_t *a = NULL;
	char *line = NULL;
	size_t cap = 0, total = 0, n = 0;
	ssize_t len;

	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	a = json_array();
	while (a && (len = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *e;

		total += (size_t)len;
		n++;
		if (total > max_bytes) {
			snprintf(err, errlen, "the run's events are larger than %zu bytes", max_bytes);
			goto fail;
		}
		if (len == 1 && line[0] == '\n')
			continue;
		e = json_loadb(line, (size_t)len, 0, &je);
		if (!json_is_object(e)) {
			json_decref(e);
			snprintf(err, errlen, "line %zu is not a JSON event: %s", n, je.text);
			goto fail;
		}
		json_array_append_new(a, e);
	}
	if (a && ferror(f)) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	free(line);
	fclose(f);
	return a;
fail:
	free(line);
	fclose(f);
	json_decref(a);
	return NULL;
}

json_t *quiz_parse_events(const char *buf, size_t len, size_t max_events, char *err,
			  size_t errlen)
{
	json_t *a = json_array();
	size_t off = 0, line = 0;

	while (a && off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;
		json_error_t je;
		json_t *e;

		line++;
		if (n == 0 || (n == 1 && buf[off] == '\r')) {
			off += n + 1;
			continue;
		}
		if (json_array_size(a) >= max_events) {
			snprintf(err, errlen, "more than %zu events", max_events);
			goto fail;
		}
		e = json_loadb(buf + off, n, 0, &je);
		if (!json_is_object(e)) {
			json_decref(e);
			snprintf(err, errlen, "line %zu is not a JSON event: %s", line,
				 e ? "not an object" : je.text);
			goto fail;
		}
		json_array_append_new(a, e);
		off += n + 1;
	}
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (strcmp(quiz_ev_type(json_array_get(a, 0)), "run.start") ||
	    !*quiz_str(json_array_get(a, 0), "lab")) {
		snprintf(err, errlen, "the first event must be run.start naming its lab");
		goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}

const char *quiz_events_lab(const json_t *events)
{
	return json_string_value(json_object_get(json_array_get(events, 0), "lab"));
}

const char *quiz_ev_type(const json_t *e)
{
	return quiz_str(e, "type");
}

long long quiz_ev_seq(const json_t *e)
{
	return quiz_int(e, "seq", -1);
}

const char *quiz_str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

long long quiz_int(const json_t *o, const char *key, long long def)
{
	const json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

const json_t *quiz_run_params(const json_t *events)
{
	const json_t *e = json_array_get(events, 0);

	if (strcmp(quiz_ev_type(e), "run.start"))
		return NULL;
	return json_object_get(e, "params");
}

const json_t *quiz_run_end(const json_t *events)
{
	size_t n = json_array_size(events);
	const json_t *e = n ? json_array_get(events, n - 1) : NULL;

	return e && !strcmp(quiz_ev_type(e), "run.end") ? e : NULL;
}

int quiz_ended_ok(const json_t *events, struct quiz_truth *t)
{
	const json_t *end = quiz_run_end(events);

	if (end && !strcmp(quiz_str(end, "status"), "ok"))
		return 1;
	t->why = "*run_not_ok";
	json_object_set_new(t->params, "status",
			    json_string(end ? quiz_str(end, "status") : "running"));
	return 0;
}

void quiz_tw_sides(struct quiz_truth *t, const json_t *seen[2])
{
	t->decided = 1;
	t->choice = seen[0] && seen[1] ? "both" : seen[0] ? "client" : seen[1] ? "server" : "neither";
	t->why = t->choice;
	quiz_evidence(t, seen[0]);
	quiz_evidence(t, seen[1]);
	json_object_set_new(t->params, "client_seq", json_integer(seen[0] ? quiz_ev_seq(seen[0]) : -1));
	json_object_set_new(t->params, "server_seq", json_integer(seen[1] ? quiz_ev_seq(seen[1]) : -1));
}

void quiz_evidence(struct quiz_truth *t, const json_t *e)
{
	if (e && quiz_ev_seq(e) >= 0)
		json_array_append_new(t->evidence, json_integer(quiz_ev_seq(e)));
}

const json_t *quiz_find_note(const json_t *events, const char *key)
{
	size_t i;
	const json_t *e;

	json_array_foreach(events, i, e)
		if (!strcmp(quiz_ev_type(e), "note") && !strcmp(quiz_str(e, "key"), key))
			return e;
	return NULL;
}
