/* ws_quiz.c: class questions: the instructor poses one (from a lab's bank or free), students answer, the tally, and the reveal graded against the class run. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "bus.h"
#include "bus_class.h"
#include "config.h"
#include "quiz/quiz.h"
#include "ws_int.h"

/*
 * One question at a time per class: {"op":"class.quiz","action":A,...}.
 *   open    (instructor) question {lab, q} from a bank, or {kind: "choice",
 *           text, choices[]} / {kind: "number", text, min, max}: a new
 *           question replaces the previous one; everyone receives class.quiz.
 *   answer  (student) id, answer: kept until the vote closes (a new answer
 *           replaces the old one); the instructor receives class.quiz.tally.
 *   close   (instructor): no more answers.
 *   reveal  (instructor) a bank question is graded against the class's
 *           latest run (its events, read from its bundle, by the same C
 *           code as `socklab grade`); a free one against the instructor's
 *           "correct". Each student receives its own class.quiz.result.
 *   csv     (instructor): class.quiz.csv, name,answer,correct per student.
 * Everything here runs on the lws service thread.
 */

#define QZ_TEXT_MAX 300      /* bytes of a free question's text */
#define QZ_CHOICES_MAX 6     /* choices of a free question */
#define QZ_CHOICE_MAX 80     /* bytes of one choice's text */
#define QZ_NUM_LIMIT 1000000000LL
#define QZ_EVENTS_MAX (8u * 1024 * 1024) /* a class run larger is not graded */
#define QZ_OPEN_RATE 1.0     /* questions a class may open per second */
#define QZ_OPEN_BURST 5.0

static const char *const free_ids[] = {"a", "b", "c", "d", "e", "f", NULL};

/* One per student identity (ws_session.member): a student who reconnects
 * and joins again with the identity the page kept is the same row, with
 * the latest answer and name, and sid follows the newest session. */
struct qz_answer {
	uint64_t sid;
	char member[WS_MEMBER_LEN + 1];
	/* --nats: the answer's nonce when it came from another replica (which
	 * sends it again until it hears back): the same nonce again is the
	 * same answer, replied to and not counted twice. "" when local. */
	char nonce[WS_NONCE_LEN + 1];
	char name[CLASS_NAME_BYTES + 1];
	json_t *answer;
	json_t *verdict; /* after the reveal */
};

struct ws_quiz {
	unsigned id;        /* the current question's number (1, 2, ...) */
	int state;          /* QZ_OPEN, QZ_CLOSED, QZ_REVEALED */
	json_t *question;   /* what everyone is shown */
	const struct quiz_question *bank;
	char lab[64];
	struct quiz_question free_q; /* a free question, checked like a bank one */
	const char *free_choices[QZ_CHOICES_MAX + 1];
	struct qz_answer *a;
	size_t n, cap;
	json_t *reveal; /* the instructor's view of the reveal */
	struct class_bucket rate;
};

enum { QZ_OPEN, QZ_CLOSED, QZ_REVEALED };
static const char *const state_names[] = {"open", "closed", "revealed"};

static void answers_clear(struct ws_quiz *q)
{
	size_t i;

	for (i = 0; i < q->n; i++) {
		json_decref(q->a[i].answer);
		json_decref(q->a[i].verdict);
	}
	q->n = 0;
}

void ws_quiz_free(struct ws_quiz *q)
{
	if (!q)
		return;
	answers_clear(q);
	free(q->a);
	json_decref(q->question);
	json_decref(q->reveal);
	free(q);
}

static json_t *notice(const struct ws_quiz *q)
{
	return json_pack("{s:s, s:i, s:s, s:O}", "type", "class.quiz", "id", (int)q->id, "state",
			 state_names[q->state], "question", q->question);
}

/* To every student and the instructor. */
static void broadcast(struct ws_class *c, json_t *o)
{
	struct ws_session *t = ws_session_find(c->srv, c->instructor);
	size_t i;

	for (i = 0; i < c->n_members; i++) {
		struct ws_session *s = ws_session_find(c->srv, c->members[i]);
		if (s)
			ws_send_json(s, json_incref(o));
	}
	if (t)
		ws_send_json(t, json_incref(o));
	json_decref(o);
	/* --nats: the question is part of the class's state elsewhere. */
	ws_cluster_changed(c);
}

json_t *ws_quiz_notice(const struct ws_class *c)
{
	return c->quiz && c->quiz->question ? notice(c->quiz) : NULL;
}

static json_t *tally(const struct ws_quiz *q, const struct ws_class *c)
{
	json_t *counts = json_object(), *who = json_array();
	size_t i;

	for (i = 0; i < q->n; i++) {
		char k[48];
		const json_t *a = q->a[i].answer;
		json_t *n;

		if (json_is_string(a))
			snprintf(k, sizeof k, "%s", json_string_value(a));
		else
			snprintf(k, sizeof k, "%lld", (long long)json_integer_value(a));
		n = json_object_get(counts, k);
		json_object_set_new(counts, k, json_integer(n ? json_integer_value(n) + 1 : 1));
		json_array_append_new(who, json_pack("{s:s, s:O}", "name", q->a[i].name, "answer", a));
	}
	return json_pack("{s:s, s:i, s:s, s:i, s:i, s:o, s:o}", "type", "class.quiz.tally", "id",
			 (int)q->id, "state", state_names[q->state], "answered", (int)q->n, "members",
			 (int)ws_cluster_count(c), "counts", counts, "who", who);
}

static void send_tally(struct ws_class *c)
{
	struct ws_session *t = ws_session_find(c->srv, c->instructor);

	if (t && c->quiz)
		ws_send_json(t, tally(c->quiz, c));
}

/* The session of answer a's student on this replica, or NULL: the one
 * that answered, or (an answer given elsewhere, before the class moved
 * here) a student here with its member identity. */
static struct ws_session *answer_session(struct ws_class *c, struct qz_answer *a)
{
	struct ws_session *s = ws_session_find(c->srv, a->sid);
	size_t i;

	for (i = 0; !s && i < c->n_members; i++) {
		struct ws_session *m = ws_session_find(c->srv, c->members[i]);
		if (m && !strcmp(m->member, a->member)) {
			a->sid = m->id;
			s = m;
		}
	}
	return s;
}

/* A student who joins while a question is up is shown it. */
void ws_quiz_joined(struct ws_class *c, struct ws_session *s)
{
	size_t i;

	/* A student who rejoins: their answer's results go to this session. */
	for (i = 0; c->quiz && i < c->quiz->n; i++)
		if (!strcmp(c->quiz->a[i].member, s->member))
			c->quiz->a[i].sid = s->id;
	if (c->quiz && c->quiz->question && c->quiz->state != QZ_REVEALED)
		ws_send_json(s, notice(c->quiz));
	send_tally(c);
}

/* The instructor's op went through. */
static void ack(struct ws_session *s, const char *action, unsigned id, const char *tag)
{
	ws_send_json(s, json_pack("{s:s, s:s, s:i, s:s?}", "type", "class.quiz.done", "action",
				  action, "id", (int)id, "tag", tag));
}

static const char *str_ok(const json_t *v, size_t max)
{
	const char *s = json_string_value(v);
	size_t n = s ? strlen(s) : 0;

	return s && n >= 1 && n <= max ? s : NULL;
}

/* Check the instructor's question; fill q (question, bank or free_q). 0, or
 * -1 after telling s what is wrong. */
static int parse_question(struct ws_session *s, struct ws_quiz *q, const json_t *in,
			  const char *tag)
{
	const char *lab = json_string_value(json_object_get(in, "lab"));
	const char *qid = json_string_value(json_object_get(in, "q"));
	const char *kind = json_string_value(json_object_get(in, "kind"));
	const char *text;
	char m[200];

	if (!json_is_object(in)) {
		ws_send_error(s, "bad_request", "question",
			      "'question' must be an object: {lab, q} from a lab's bank, or {kind, text, "
			      "choices} / {kind, text, min, max}",
			      tag, NULL);
		return -1;
	}
	if (lab || qid) {
		const struct quiz_question *b = quiz_find(lab, qid);
		json_t *d;
		size_t i;
		json_t *x;

		if (!b) {
			snprintf(m, sizeof m, "no question '%.40s' in the bank of lab '%.40s'",
				 qid ? qid : "", lab ? lab : "");
			ws_send_error(s, "bad_param", "question", m, tag, NULL);
			return -1;
		}
		q->bank = b;
		snprintf(q->lab, sizeof q->lab, "%s", lab);
		d = quiz_describe(lab);
		json_array_foreach(d, i, x)
			if (!strcmp(json_string_value(json_object_get(x, "id")), qid))
				q->question = json_incref(x);
		json_decref(d);
		json_object_set_new(q->question, "source", json_string("bank"));
		json_object_set_new(q->question, "lab", json_string(lab));
		json_object_set_new(q->question, "q", json_string(qid));
		return 0;
	}
	text = str_ok(json_object_get(in, "text"), QZ_TEXT_MAX);
	if (!text) {
		snprintf(m, sizeof m, "'text' must be the question, 1..%d bytes", QZ_TEXT_MAX);
		ws_send_error(s, "bad_param", "text", m, tag, NULL);
		return -1;
	}
	memset(&q->free_q, 0, sizeof q->free_q);
	q->free_q.id = "question";
	if (kind && !strcmp(kind, "choice")) {
		const json_t *cs = json_object_get(in, "choices");
		json_t *labels = json_array(), *ids = json_array();
		size_t i, n = json_array_size(cs);

		if (!json_is_array(cs) || n < 2 || n > QZ_CHOICES_MAX) {
			json_decref(labels);
			json_decref(ids);
			snprintf(m, sizeof m, "'choices' must be a list of 2..%d choices", QZ_CHOICES_MAX);
			ws_send_error(s, "bad_param", "choices", m, tag, NULL);
			return -1;
		}
		for (i = 0; i < n; i++) {
			const char *c = str_ok(json_array_get(cs, i), QZ_CHOICE_MAX);
			if (!c) {
				json_decref(labels);
				json_decref(ids);
				snprintf(m, sizeof m, "choice %zu must be text of 1..%d bytes", i + 1,
					 QZ_CHOICE_MAX);
				ws_send_error(s, "bad_param", "choices", m, tag, NULL);
				return -1;
			}
			json_array_append_new(labels, json_string(c));
			json_array_append_new(ids, json_string(free_ids[i]));
			q->free_choices[i] = free_ids[i];
		}
		q->free_choices[n] = NULL;
		q->free_q.kind = QUIZ_CHOICE;
		q->free_q.choices = q->free_choices;
		q->question = json_pack("{s:s, s:s, s:s, s:o, s:o}", "source", "free", "kind", "choice",
					"text", text, "choices", ids, "labels", labels);
		return 0;
	}
	if (kind && !strcmp(kind, "number")) {
		const json_t *mn = json_object_get(in, "min"), *mx = json_object_get(in, "max");
		if (!json_is_integer(mn) || !json_is_integer(mx) ||
		    json_integer_value(mn) < -QZ_NUM_LIMIT || json_integer_value(mx) > QZ_NUM_LIMIT ||
		    json_integer_value(mn) > json_integer_value(mx)) {
			snprintf(m, sizeof m,
				 "'min' and 'max' must be integers, min <= max, within -%lld..%lld",
				 QZ_NUM_LIMIT, QZ_NUM_LIMIT);
			ws_send_error(s, "bad_param", "min", m, tag, NULL);
			return -1;
		}
		q->free_q.kind = QUIZ_NUMBER;
		q->free_q.min = json_integer_value(mn);
		q->free_q.max = json_integer_value(mx);
		q->question = json_pack("{s:s, s:s, s:s, s:I, s:I}", "source", "free", "kind", "number",
					"text", text, "min", (json_int_t)q->free_q.min, "max",
					(json_int_t)q->free_q.max);
		return 0;
	}
	ws_send_error(s, "bad_param", "kind",
		      "'kind' must be \"choice\" or \"number\" (or give lab and q for a bank question)",
		      tag, NULL);
	return -1;
}

static const struct quiz_question *current_q(const struct ws_quiz *q)
{
	return q->bank ? q->bank : &q->free_q;
}

static void quiz_open(struct ws_session *s, struct ws_class *c, json_t *msg, const char *tag)
{
	struct ws_quiz *q = c->quiz, tmp;

	if (!q) {
		q = calloc(1, sizeof *q);
		if (!q) {
			ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
			return;
		}
		c->quiz = q;
	}
	if (!class_bucket_ready(&q->rate, QZ_OPEN_RATE, QZ_OPEN_BURST, ws_now_us())) {
		ws_send_error(s, "limit", "question", "at most one new question a second", tag, NULL);
		return;
	}
	/* A bad question changes nothing: the one that is up stays up. */
	memset(&tmp, 0, sizeof tmp);
	if (parse_question(s, &tmp, json_object_get(msg, "question"), tag) < 0) {
		json_decref(tmp.question);
		return;
	}
	class_bucket_take(&q->rate, QZ_OPEN_RATE, QZ_OPEN_BURST, ws_now_us());
	json_decref(q->question);
	json_decref(q->reveal);
	q->reveal = NULL;
	answers_clear(q);
	q->question = tmp.question;
	q->bank = tmp.bank;
	memcpy(q->lab, tmp.lab, sizeof q->lab);
	memcpy(q->free_choices, tmp.free_choices, sizeof q->free_choices);
	q->free_q = tmp.free_q;
	q->free_q.choices = q->free_choices;
	q->id++;
	q->state = QZ_OPEN;
	broadcast(c, notice(q));
	send_tally(c);
	ack(s, "open", q->id, tag);
}

static int require_question(struct ws_session *s, struct ws_class *c, const char *tag)
{
	if (c->quiz && c->quiz->question)
		return 1;
	ws_send_error(s, "bad_request", NULL, "no question has been posed in this class", tag, NULL);
	return 0;
}

static json_t *err_json(const char *code, const char *param, const char *message, const char *tag)
{
	return json_pack("{s:s, s:s, s:s?, s:s, s:s?}", "type", "error", "code", code, "param", param,
			 "message", message, "tag", tag);
}

/* One student's answer, from this replica (sid: its session) or another
 * (sid 0): kept once per member identity, its latest answer counting. The
 * reply for the student: class.quiz.answered or an error. */
static json_t *take_answer(struct ws_class *c, const char *member, const char *name,
			   uint64_t sid, const json_t *id, const json_t *answer, const char *nonce,
			   const char *tag)
{
	struct ws_quiz *q = c->quiz;
	char err[200];
	json_t *a;
	size_t i;

	if (!q || !q->question)
		return err_json("bad_request", NULL, "no question has been posed in this class", tag);
	/* The same answer sent again (its reply was lost): counted already. */
	for (i = 0; nonce && nonce[0] && i < q->n; i++)
		if (!strcmp(q->a[i].member, member) && !strcmp(q->a[i].nonce, nonce))
			return json_pack("{s:s, s:i, s:O, s:s?}", "type", "class.quiz.answered", "id",
					 (int)q->id, "answer", q->a[i].answer, "tag", tag);
	if (!json_is_integer(id) || json_integer_value(id) != q->id) {
		snprintf(err, sizeof err, "'id' must be the current question's, %u", q->id);
		return err_json("bad_request", "id", err, tag);
	}
	if (q->state != QZ_OPEN)
		return err_json("closed", "id", "the vote on this question is closed", tag);
	a = quiz_answer_from_json(current_q(q), answer, err, sizeof err);
	if (!a)
		return err_json("bad_param", "answer", err, tag);
	for (i = 0; i < q->n && strcmp(q->a[i].member, member); i++)
		;
	if (i == q->n) {
		if (q->n == q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 16;
			struct qz_answer *na = realloc(q->a, cap * sizeof *na);
			if (!na) {
				json_decref(a);
				return err_json("internal", NULL, "out of memory", tag);
			}
			q->a = na;
			q->cap = cap;
		}
		memset(&q->a[q->n], 0, sizeof q->a[q->n]);
		snprintf(q->a[q->n].member, sizeof q->a[q->n].member, "%s", member);
		q->n++;
	}
	q->a[i].sid = sid;
	snprintf(q->a[i].name, sizeof q->a[i].name, "%s", name);
	snprintf(q->a[i].nonce, sizeof q->a[i].nonce, "%s", nonce ? nonce : "");
	json_decref(q->a[i].answer);
	q->a[i].answer = a;
	send_tally(c);
	ws_cluster_answers_changed(c);
	return json_pack("{s:s, s:i, s:O, s:s?}", "type", "class.quiz.answered", "id", (int)q->id,
			 "answer", a, "tag", tag);
}

static void quiz_answer(struct ws_session *s, struct ws_class *c, json_t *msg, const char *tag)
{
	if (s->teaching) {
		ws_send_error(s, "forbidden", NULL, "the instructor does not answer", tag, NULL);
		return;
	}
	if (!require_question(s, c, tag))
		return;
	ws_send_json(s, take_answer(c, s->member, s->name, s->id, json_object_get(msg, "id"),
				    json_object_get(msg, "answer"), NULL, tag));
}

json_t *ws_quiz_remote_answer(struct ws_class *c, const json_t *in)
{
	const char *member = json_string_value(json_object_get(in, "member"));
	const char *name = json_string_value(json_object_get(in, "name"));
	const char *tag = json_string_value(json_object_get(in, "tag"));
	const char *nonce = json_string_value(json_object_get(in, "nonce"));

	if (!member || strlen(member) != WS_MEMBER_LEN || !name || strlen(name) > CLASS_NAME_BYTES ||
	    (nonce && strlen(nonce) > WS_NONCE_LEN))
		return NULL;
	return take_answer(c, member, name, 0, json_object_get(in, "id"),
			   json_object_get(in, "answer"), nonce, tag);
}

json_t *ws_quiz_answers(const struct ws_class *c)
{
	const struct ws_quiz *q = c->quiz;
	json_t *out;
	size_t i;

	if (!q || !q->question)
		return NULL;
	out = json_array();
	for (i = 0; out && i < q->n; i++)
		json_array_append_new(out, json_pack("{s:s, s:s, s:O, s:s}", "member", q->a[i].member,
						     "name", q->a[i].name, "answer", q->a[i].answer,
						     "nonce", q->a[i].nonce));
	return out;
}

int ws_quiz_restore(struct ws_class *c, const json_t *notice, const json_t *answers)
{
	const json_t *qn = json_object_get(notice, "question"), *x;
	const char *src = json_string_value(json_object_get(qn, "source"));
	const char *kind = json_string_value(json_object_get(qn, "kind"));
	const char *st = json_string_value(json_object_get(notice, "state"));
	json_int_t id = json_integer_value(json_object_get(notice, "id"));
	struct ws_quiz *q;
	size_t i, n;
	int k;

	ws_quiz_free(c->quiz);
	c->quiz = NULL;
	if (!json_is_object(qn) || !src || !st || id < 1 || id > INT_MAX)
		return -1;
	q = calloc(1, sizeof *q);
	if (!q)
		return -1;
	q->question = json_deep_copy(qn);
	q->id = (unsigned)id;
	for (k = 0; k < 3 && strcmp(state_names[k], st); k++)
		;
	/* A revealed question comes back closed: its verdicts stayed where it
	 * was revealed; the instructor reveals it again here. */
	q->state = k == QZ_OPEN ? QZ_OPEN : QZ_CLOSED;
	q->free_q.id = "question";
	if (!strcmp(src, "bank")) {
		const char *lab = json_string_value(json_object_get(qn, "lab"));
		q->bank = quiz_find(lab, json_string_value(json_object_get(qn, "q")));
		if (q->bank)
			snprintf(q->lab, sizeof q->lab, "%s", lab);
	} else if (kind && !strcmp(kind, "choice")) {
		n = json_array_size(json_object_get(qn, "labels"));
		for (i = 0; i < n && i < QZ_CHOICES_MAX; i++)
			q->free_choices[i] = free_ids[i];
		q->free_choices[i] = NULL;
		q->free_q.kind = QUIZ_CHOICE;
		q->free_q.choices = q->free_choices;
		if (n < 2) {
			json_decref(q->question);
			q->question = NULL;
		}
	} else if (kind && !strcmp(kind, "number")) {
		q->free_q.kind = QUIZ_NUMBER;
		q->free_q.min = json_integer_value(json_object_get(qn, "min"));
		q->free_q.max = json_integer_value(json_object_get(qn, "max"));
	} else {
		json_decref(q->question);
		q->question = NULL;
	}
	if (!q->question || (!strcmp(src, "bank") && !q->bank)) {
		ws_quiz_free(q);
		return -1;
	}
	json_array_foreach(answers, i, x) {
		const char *member = json_string_value(json_object_get(x, "member"));
		const char *name = json_string_value(json_object_get(x, "name"));
		const char *nonce = json_string_value(json_object_get(x, "nonce"));
		char err[200];
		json_t *a;

		if (!member || strlen(member) != WS_MEMBER_LEN || !name ||
		    strlen(name) > CLASS_NAME_BYTES || (nonce && strlen(nonce) > WS_NONCE_LEN))
			continue;
		a = quiz_answer_from_json(current_q(q), json_object_get(x, "answer"), err, sizeof err);
		if (!a)
			continue;
		if (q->n == q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 16;
			struct qz_answer *na = realloc(q->a, cap * sizeof *na);
			if (!na) {
				json_decref(a);
				break;
			}
			q->a = na;
			q->cap = cap;
		}
		memset(&q->a[q->n], 0, sizeof q->a[q->n]);
		snprintf(q->a[q->n].member, sizeof q->a[q->n].member, "%s", member);
		snprintf(q->a[q->n].name, sizeof q->a[q->n].name, "%s", name);
		snprintf(q->a[q->n].nonce, sizeof q->a[q->n].nonce, "%s", nonce ? nonce : "");
		q->a[q->n++].answer = a;
	}
	c->quiz = q;
	return 0;
}

void ws_quiz_members_changed(struct ws_class *c)
{
	send_tally(c);
}

static void quiz_close(struct ws_session *s, struct ws_class *c, const char *tag)
{
	if (!require_question(s, c, tag))
		return;
	if (c->quiz->state == QZ_OPEN)
		c->quiz->state = QZ_CLOSED;
	broadcast(c, notice(c->quiz));
	send_tally(c);
	ack(s, "close", c->quiz->id, tag);
}

/* The truth for the current question: from the class run's events (bank)
 * or the instructor's "correct" (free). 0, or -1 after telling s. */
static int find_truth(struct ws_session *s, struct ws_class *c, json_t *msg, struct quiz_truth *t,
		      const char *tag)
{
	struct ws_quiz *q = c->quiz;
	char path[PATH_MAX], err[300];
	json_t *events, *a;
	const char *lab;

	memset(t, 0, sizeof *t);
	if (!q->bank) {
		a = quiz_answer_from_json(&q->free_q, json_object_get(msg, "correct"), err, sizeof err);
		if (!a) {
			ws_send_error(s, "bad_param", "correct", err, tag, NULL);
			return -1;
		}
		t->evidence = json_array();
		t->params = json_object();
		t->decided = 1;
		t->why = "*instructor";
		if (json_is_string(a)) {
			const char *const *ch;
			for (ch = q->free_choices; *ch; ch++)
				if (!strcmp(*ch, json_string_value(a)))
					t->choice = *ch;
		} else {
			t->num = json_integer_value(a);
		}
		json_decref(a);
		return 0;
	}
	if (!c->run[0] || c->run_live) {
		ws_send_error(s, "bad_request", NULL,
			      c->run[0] ? "the class run is still going: reveal when it has ended"
					: "run the lab for the class first: the reveal grades against that run",
			      tag, NULL);
		return -1;
	}
	if (runs_bundle_path(c->srv->cfg->data, c->run, "events.jsonl", path, sizeof path) < 0) {
		ws_send_error(s, "internal", NULL, "the class run's events cannot be found", tag, NULL);
		return -1;
	}
	/* --nats: a class that moved here after its run: the run's events as
	 * this replica copied them from the stream, once they are whole. */
	if (access(path, F_OK) < 0 && c->srv->bus) {
		long long n = 0;
		if (bus_mirror_open(c->srv->bus, c->run, path, sizeof path, err, sizeof err) < 0 ||
		    bus_mirror_state(c->srv->bus, c->run, &n, NULL, 0) != BUS_M_ENDED) {
			ws_send_error(s, "unavailable", NULL,
				      "the class run was made on another server and is still being "
				      "read from NATS (or is incomplete): try the reveal again",
				      tag, c->run);
			return -1;
		}
	}
	events = quiz_load_events(path, QZ_EVENTS_MAX, err, sizeof err);
	if (!events) {
		ws_send_error(s, "run_too_large", NULL, err, tag, c->run);
		return -1;
	}
	lab = quiz_events_lab(events);
	if (!lab || strcmp(lab, q->lab)) {
		snprintf(err, sizeof err, "the class run is a %.40s run; this question is about %.40s",
			 lab ? lab : "?", q->lab);
		ws_send_error(s, "bad_request", NULL, err, tag, c->run);
		json_decref(events);
		return -1;
	}
	if (quiz_truth_of(q->bank, events, t) < 0) {
		json_decref(events);
		ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return -1;
	}
	json_decref(events);
	return 0;
}

static void quiz_reveal(struct ws_session *s, struct ws_class *c, json_t *msg, const char *tag)
{
	struct ws_quiz *q;
	struct quiz_truth t;
	json_t *rows, *v = NULL, *elsewhere;
	int right = 0, wrong = 0, undecided = 0;
	size_t i;

	if (!require_question(s, c, tag))
		return;
	q = c->quiz;
	if (find_truth(s, c, msg, &t, tag) < 0)
		return;
	q->state = QZ_REVEALED;
	rows = json_array();
	elsewhere = json_object();
	for (i = 0; i < q->n; i++) {
		struct ws_session *m = answer_session(c, &q->a[i]);
		const char *res;

		json_decref(q->a[i].verdict);
		q->a[i].verdict = quiz_verdict(q->bank ? q->lab : "free", current_q(q), &t,
					       q->a[i].answer, "en");
		res = json_string_value(json_object_get(q->a[i].verdict, "result"));
		right += !strcmp(res, "right");
		wrong += !strcmp(res, "wrong");
		undecided += !strcmp(res, "undecided");
		json_array_append_new(rows, json_pack("{s:s, s:O, s:s}", "name", q->a[i].name,
						      "answer", q->a[i].answer, "result", res));
		if (m)
			ws_send_json(m, json_pack("{s:s, s:i, s:s?, s:O}", "type", "class.quiz.result",
						  "id", (int)q->id, "run", q->bank ? c->run : NULL,
						  "verdict", q->a[i].verdict));
		else
			/* A student of another replica (or gone): its replica
			 * hands the result to the member's page. */
			json_object_set_new(elsewhere, q->a[i].member,
					    json_pack("{s:s, s:i, s:s?, s:O}", "type",
						      "class.quiz.result", "id", (int)q->id, "run",
						      q->bank ? c->run : NULL, "verdict",
						      q->a[i].verdict));
	}
	/* The run's own answer, for everyone (and for students who did not answer). */
	v = quiz_verdict(q->bank ? q->lab : "free", current_q(q), &t, NULL, "en");
	json_decref(q->reveal);
	q->reveal = json_pack("{s:s, s:i, s:s?, s:O, s:i, s:i, s:i, s:i, s:o}", "type",
			      "class.quiz.revealed", "id", (int)q->id, "run", q->bank ? c->run : NULL,
			      "truth", v, "answered", (int)q->n, "right", right, "wrong", wrong,
			      "undecided", undecided, "answers", rows);
	quiz_truth_cleanup(&t);
	json_decref(v);
	broadcast(c, notice(q));
	{
		struct ws_session *tch = ws_session_find(c->srv, c->instructor);
		json_t *pub = json_deep_copy(q->reveal);
		/* Students see the run's answer and the counts, never the names. */
		json_object_del(pub, "answers");
		for (i = 0; i < c->n_members; i++) {
			struct ws_session *m = ws_session_find(c->srv, c->members[i]);
			if (m)
				ws_send_json(m, json_incref(pub));
		}
		if (c->srv->bclass) {
			if (json_object_size(elsewhere))
				bus_class_send(c->srv->bclass, c->code,
					       json_pack("{s:s, s:O}", "kind", "to_many", "msgs",
							 elsewhere));
			bus_class_send(c->srv->bclass, c->code,
				       json_pack("{s:s, s:O}", "kind", "all", "msg", pub));
		}
		json_decref(pub);
		if (tch)
			ws_send_json(tch, json_incref(q->reveal));
	}
	json_decref(elsewhere);
	ack(s, "reveal", q->id, tag);
}

void ws_quiz_resend(struct ws_class *c)
{
	struct ws_quiz *q = c->quiz;
	json_t *elsewhere, *pub;
	size_t i;

	if (!q || q->state != QZ_REVEALED || !q->reveal || !c->srv->bclass)
		return;
	elsewhere = json_object();
	for (i = 0; i < q->n; i++)
		if (q->a[i].verdict && !answer_session(c, &q->a[i]))
			json_object_set_new(elsewhere, q->a[i].member,
					    json_pack("{s:s, s:i, s:s?, s:O}", "type",
						      "class.quiz.result", "id", (int)q->id, "run",
						      q->bank ? c->run : NULL, "verdict",
						      q->a[i].verdict));
	if (json_object_size(elsewhere))
		bus_class_send(c->srv->bclass, c->code,
			       json_pack("{s:s, s:O}", "kind", "to_many", "msgs", elsewhere));
	json_decref(elsewhere);
	pub = json_deep_copy(q->reveal);
	json_object_del(pub, "answers");
	bus_class_send(c->srv->bclass, c->code, json_pack("{s:s, s:o}", "kind", "all", "msg", pub));
}

/* A CSV field: quoted when it holds a comma, quote or line break; a leading
 * = + - @ is prefixed with ' so a spreadsheet does not run it as a formula. */
static void csv_field(struct ev_buf *b, const char *v)
{
	const char *p;
	int quote = strpbrk(v, ",\"\r\n") != NULL;

	if (quote)
		ev_buf_put(b, "\"", 1);
	if (strchr("=+-@", v[0]) && v[0])
		ev_buf_put(b, "'", 1);
	for (p = v; *p; p++) {
		if (*p == '"')
			ev_buf_put(b, "\"", 1);
		ev_buf_put(b, p, 1);
	}
	if (quote)
		ev_buf_put(b, "\"", 1);
}

static void quiz_csv(struct ws_session *s, struct ws_class *c, const char *tag)
{
	struct ws_quiz *q;
	struct ev_buf b = {0};
	size_t i;

	if (!require_question(s, c, tag))
		return;
	q = c->quiz;
	ev_buf_puts(&b, "name,answer,correct\r\n");
	for (i = 0; i < q->n; i++) {
		char ans[80];
		const char *res = q->a[i].verdict
					  ? json_string_value(json_object_get(q->a[i].verdict, "result"))
					  : "";
		if (json_is_string(q->a[i].answer))
			snprintf(ans, sizeof ans, "%s", json_string_value(q->a[i].answer));
		else
			snprintf(ans, sizeof ans, "%lld", (long long)json_integer_value(q->a[i].answer));
		csv_field(&b, q->a[i].name);
		ev_buf_put(&b, ",", 1);
		csv_field(&b, ans);
		ev_buf_put(&b, ",", 1);
		ev_buf_puts(&b, !strcmp(res, "right")   ? "yes"
				: !strcmp(res, "wrong") ? "no"
							: "");
		ev_buf_puts(&b, "\r\n");
	}
	ev_buf_put(&b, "", 1);
	if (b.oom) {
		ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
	} else {
		ws_send_json(s, json_pack("{s:s, s:i, s:s, s:s?}", "type", "class.quiz.csv", "id",
					  (int)q->id, "csv", b.p, "tag", tag));
	}
	ev_buf_free(&b);
}

void ws_op_class_quiz(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *action = json_string_value(json_object_get(msg, "action"));
	struct ws_class *c = s->cls;

	if (!action) {
		ws_send_error(s, "bad_request", "action",
			      "'action' must be open, answer, close, reveal or csv", tag, NULL);
		return;
	}
	if (!c) {
		ws_send_error(s, "bad_request", NULL, "join or open a class first", tag, NULL);
		return;
	}
	if (c->remote) {
		/* A class of another replica: only answers, and they go there. */
		if (strcmp(action, "answer"))
			ws_send_error(s, "forbidden", NULL, "only the class's instructor may do that",
				      tag, NULL);
		else
			ws_cluster_answer(s, msg, tag);
		return;
	}
	if (!strcmp(action, "answer")) {
		quiz_answer(s, c, msg, tag);
		return;
	}
	if (strcmp(action, "open") && strcmp(action, "close") && strcmp(action, "reveal") &&
	    strcmp(action, "csv")) {
		ws_send_error(s, "bad_request", "action",
			      "'action' must be open, answer, close, reveal or csv", tag, NULL);
		return;
	}
	if (!s->teaching) {
		ws_send_error(s, "forbidden", NULL, "only the class's instructor may do that", tag,
			      NULL);
		return;
	}
	if (!strcmp(action, "open"))
		quiz_open(s, c, msg, tag);
	else if (!strcmp(action, "close"))
		quiz_close(s, c, tag);
	else if (!strcmp(action, "reveal"))
		quiz_reveal(s, c, msg, tag);
	else
		quiz_csv(s, c, tag);
}
