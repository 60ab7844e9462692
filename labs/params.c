/* params.c: parameter schema validation shared by the CLI and the server. */
#include "lab.h"
#include "quiz/quiz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const ptype_names[] = {
	[LAB_P_INT] = "integer",
	[LAB_P_BOOL] = "boolean",
	[LAB_P_ENUM] = "choice",
	[LAB_P_STRING] = "string",
};

int lab_param_index(const struct lab_desc *lab, const char *name)
{
	size_t i;

	for (i = 0; i < lab->n_params; i++)
		if (strcmp(lab->params[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int param_index_or_die(const struct lab_params *p, const char *name)
{
	int i = lab_param_index(p->lab, name);

	if (i < 0) {
		/* A lab asked for a parameter it never declared: a bug in the lab. */
		fprintf(stderr, "socklab: lab %s has no parameter %s\n", p->lab->name, name);
		abort();
	}
	return i;
}

/* Strict base-10 integer: optional sign, digits, nothing else. */
static int parse_ll(const char *s, long long *out)
{
	char *end = NULL;
	long long v;

	/* strtoll would skip leading white space of any kind (a tab, a
	 * newline) and accept a '+': only a '-' or a digit may start it. */
	if (!(*s == '-' || (*s >= '0' && *s <= '9')))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end || end == s)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The choices of an enum as "a, b or c". */
static void choices_text(const struct lab_param_def *d, char *buf, size_t len)
{
	size_t n = 0, i, off = 0;

	while (d->choices[n])
		n++;
	buf[0] = '\0';
	for (i = 0; i < n && off < len; i++) {
		const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
		int w = snprintf(buf + off, len - off, "%s%s", sep, d->choices[i]);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/* Text is valid if it is well-formed UTF-8 (RFC 3629, section 4: no
 * overlong forms, no UTF-16 surrogates U+D800..U+DFFF, nothing above
 * U+10FFFF; JSON strings cannot carry those) without control characters. */
static int text_ok(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	while (*u) {
		unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
		int extra;

		if (*u < 0x20 || *u == 0x7f)
			return 0;
		if (*u < 0x80) {
			u++;
			continue;
		}
		if (*u >= 0xc2 && *u <= 0xdf) {
			extra = 1;
		} else if (*u >= 0xe0 && *u <= 0xef) {
			extra = 2;
			if (*u == 0xe0)
				lo = 0xa0; /* overlong below U+0800 */
			else if (*u == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (*u >= 0xf0 && *u <= 0xf4) {
			extra = 3;
			if (*u == 0xf0)
				lo = 0x90; /* overlong below U+10000 */
			else if (*u == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return 0;
		}
		u++;
		if (*u < lo || *u > hi)
			return 0;
		while (extra-- > 0) {
			if ((*u & 0xc0) != 0x80)
				return 0;
			u++;
		}
	}
	return 1;
}

static int set_value(struct lab_params *p, int idx, const char *value, char *err, size_t errlen)
{
	const struct lab_param_def *d = &p->lab->params[idx];
	struct lab_value *v = &p->v[idx];
	char choices[256];
	long long n;
	int i;

	switch (d->type) {
	case LAB_P_INT:
		if (parse_ll(value, &n) < 0 || n < d->min || n > d->max) {
			snprintf(err, errlen,
				 "parameter '%s': must be an integer from %lld to %lld%s%s (got \"%.40s\")",
				 d->name, d->min, d->max, d->unit ? " " : "", d->unit ? d->unit : "",
				 value);
			return -EINVAL;
		}
		v->i = n;
		snprintf(v->s, sizeof v->s, "%lld", n);
		break;
	case LAB_P_BOOL:
		if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes") ||
		    !strcasecmp(value, "on"))
			v->i = 1;
		else if (!strcasecmp(value, "false") || !strcmp(value, "0") ||
			 !strcasecmp(value, "no") || !strcasecmp(value, "off"))
			v->i = 0;
		else {
			snprintf(err, errlen, "parameter '%s': must be true or false (got \"%.40s\")",
				 d->name, value);
			return -EINVAL;
		}
		snprintf(v->s, sizeof v->s, "%s", v->i ? "true" : "false");
		break;
	case LAB_P_ENUM:
		for (i = 0; d->choices[i]; i++)
			if (strcmp(d->choices[i], value) == 0)
				break;
		if (!d->choices[i]) {
			choices_text(d, choices, sizeof choices);
			snprintf(err, errlen, "parameter '%s': must be one of %s (got \"%.40s\")",
				 d->name, choices, value);
			return -EINVAL;
		}
		v->i = i;
		snprintf(v->s, sizeof v->s, "%s", d->choices[i]);
		break;
	case LAB_P_STRING:
		if (strlen(value) > (size_t)d->max || strlen(value) < (size_t)d->min) {
			snprintf(err, errlen,
				 "parameter '%s': must be text of %lld to %lld bytes (got %zu bytes)",
				 d->name, d->min, d->max, strlen(value));
			return -EINVAL;
		}
		if (!text_ok(value)) {
			snprintf(err, errlen,
				 "parameter '%s': must be well-formed UTF-8 text (no surrogates, "
				 "nothing above U+10FFFF) without control characters",
				 d->name);
			return -EINVAL;
		}
		snprintf(v->s, sizeof v->s, "%s", value);
		break;
	}
	return 0;
}

void lab_params_init(struct lab_params *p, const struct lab_desc *lab)
{
	size_t i;
	char err[256];

	memset(p, 0, sizeof *p);
	p->lab = lab;
	for (i = 0; i < lab->n_params && i < LAB_MAX_PARAMS; i++) {
		if (set_value(p, (int)i, lab->params[i].def, err, sizeof err) < 0) {
			/* A default outside its own range is a bug in the descriptor. */
			fprintf(stderr, "socklab: lab %s: bad default: %s\n", lab->name, err);
			abort();
		}
		p->v[i].set = 0;
	}
}

static int unknown_param(const struct lab_params *p, const char *name, char *err, size_t errlen)
{
	size_t i, off;

	off = (size_t)snprintf(err, errlen, "unknown parameter '%.40s' for lab %s; known: ", name,
			       p->lab->name);
	for (i = 0; i < p->lab->n_params && off < errlen; i++) {
		int w = snprintf(err + off, errlen - off, "%s%s", i ? ", " : "",
				 p->lab->params[i].name);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return -ENOENT;
}

int lab_param_set(struct lab_params *p, const char *name, const char *value, char *err,
		  size_t errlen)
{
	int idx = lab_param_index(p->lab, name);
	int rc;

	if (idx < 0)
		return unknown_param(p, name, err, errlen);
	rc = set_value(p, idx, value, err, errlen);
	if (rc == 0)
		p->v[idx].set = 1;
	return rc;
}

int lab_param_set_json(struct lab_params *p, const char *name, const json_t *value, char *err,
		       size_t errlen)
{
	int idx = lab_param_index(p->lab, name);
	const struct lab_param_def *d;
	char buf[64];

	if (idx < 0)
		return unknown_param(p, name, err, errlen);
	d = &p->lab->params[idx];
	switch (json_typeof(value)) {
	case JSON_STRING:
		if (d->type == LAB_P_INT || d->type == LAB_P_BOOL)
			break; /* typed JSON must use numbers and booleans */
		return lab_param_set(p, name, json_string_value(value), err, errlen);
	case JSON_INTEGER:
		if (d->type != LAB_P_INT)
			break;
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(value));
		return lab_param_set(p, name, buf, err, errlen);
	case JSON_TRUE:
	case JSON_FALSE:
		if (d->type != LAB_P_BOOL)
			break;
		return lab_param_set(p, name, json_is_true(value) ? "true" : "false", err, errlen);
	default:
		break;
	}
	if (d->type == LAB_P_INT)
		snprintf(err, errlen, "parameter '%s': must be a JSON integer from %lld to %lld",
			 d->name, d->min, d->max);
	else
		snprintf(err, errlen, "parameter '%s': must be a JSON %s", d->name,
			 d->type == LAB_P_BOOL ? "boolean (true or false)" : "string");
	return -EINVAL;
}

int lab_param_set_kv(struct lab_params *p, const char *kv, char *err, size_t errlen)
{
	const char *eq = strchr(kv, '=');
	char name[64];
	size_t n;

	if (!eq || eq == kv) {
		snprintf(err, errlen, "-p expects KEY=VALUE (got \"%.40s\")", kv);
		return -EINVAL;
	}
	n = (size_t)(eq - kv);
	if (n >= sizeof name)
		return unknown_param(p, "(too long)", err, errlen);
	memcpy(name, kv, n);
	name[n] = '\0';
	return lab_param_set(p, name, eq + 1, err, errlen);
}

int lab_params_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	*param = NULL;
	if (!p->lab->check)
		return 0;
	return p->lab->check(p, param, err, errlen);
}

long long lab_int(const struct lab_params *p, const char *name)
{
	return p->v[param_index_or_die(p, name)].i;
}

const char *lab_str(const struct lab_params *p, const char *name)
{
	return p->v[param_index_or_die(p, name)].s;
}

int lab_is_set(const struct lab_params *p, const char *name)
{
	return p->v[param_index_or_die(p, name)].set;
}

static json_t *value_json(const struct lab_param_def *d, const struct lab_value *v)
{
	switch (d->type) {
	case LAB_P_INT:
		return json_integer(v->i);
	case LAB_P_BOOL:
		return json_boolean(v->i);
	default:
		return json_string(v->s);
	}
}

json_t *lab_params_json(const struct lab_params *p)
{
	json_t *o = json_object();
	size_t i;

	for (i = 0; o && i < p->lab->n_params; i++)
		json_object_set_new(o, p->lab->params[i].name,
				    value_json(&p->lab->params[i], &p->v[i]));
	return o;
}

json_t *lab_describe(const struct lab_desc *lab)
{
	json_t *params = json_array();
	json_t *o;
	size_t i;

	for (i = 0; i < lab->n_params; i++) {
		const struct lab_param_def *d = &lab->params[i];
		struct lab_params tmp;
		json_t *pj;

		lab_params_init(&tmp, lab);
		pj = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", d->name, "type",
			       ptype_names[d->type], "title", d->title, "help", d->help, "default",
			       value_json(d, &tmp.v[i]));
		if (d->unit)
			json_object_set_new(pj, "unit", json_string(d->unit));
		if (d->type == LAB_P_INT) {
			json_object_set_new(pj, "min", json_integer(d->min));
			json_object_set_new(pj, "max", json_integer(d->max));
		}
		if (d->type == LAB_P_STRING) {
			json_object_set_new(pj, "min_len", json_integer(d->min));
			json_object_set_new(pj, "max_len", json_integer(d->max));
		}
		if (d->type == LAB_P_ENUM) {
			json_t *c = json_array();
			size_t k;
			for (k = 0; d->choices[k]; k++)
				json_array_append_new(c, json_string(d->choices[k]));
			json_object_set_new(pj, "choices", c);
		}
		json_object_set_new(pj, "advanced", json_boolean(d->flags & LAB_PF_ADVANCED));
		json_object_set_new(pj, "server_assigned", json_boolean(d->flags & LAB_PF_SERVER));
		if (d->flags & LAB_PF_UPLOAD)
			json_object_set_new(pj, "upload", json_true());
		json_array_append_new(params, pj);
	}
	o = json_pack("{s:s, s:s, s:s, s:o}", "name", lab->name, "title", lab->title, "summary",
		      lab->summary, "params", params);
	if (o && lab->captures)
		json_object_set_new(o, "captures", json_true());
	if (o)
		json_object_set_new(o, "questions", quiz_describe(lab->name));
	return o;
}
