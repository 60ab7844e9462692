/* fuzz_params.c: libFuzzer target for the lab parameter parser (labs/params.c) with every lab's schema and checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a finding) unless every value is one its schema allows and the
 * applied parameters serialise (a value jansson refuses would vanish). */
static void check_values(const struct lab_params *p)
{
	json_t *j = lab_params_json(p);
	size_t i;

	if (!j || json_object_size(j) != p->lab->n_params)
		abort();
	for (i = 0; i < p->lab->n_params; i++) {
		const struct lab_param_def *d = &p->lab->params[i];
		const struct lab_value *v = &p->v[i];
		json_t *jv = json_object_get(j, d->name);

		if (!jv)
			abort();
		switch (d->type) {
		case LAB_P_INT:
			if (v->i < d->min || v->i > d->max)
				abort();
			break;
		case LAB_P_BOOL:
			if (v->i != 0 && v->i != 1)
				abort();
			break;
		case LAB_P_ENUM:
			if (v->i < 0 || !d->choices[v->i])
				abort();
			break;
		case LAB_P_STRING:
			if (strlen(v->s) > (size_t)d->max || !json_is_string(jv))
				abort();
			break;
		}
	}
	json_decref(j);
}

/*
 * The first byte picks the lab and the way in: KEY=VALUE lines as the CLI's
 * -p takes them (bit 7 clear), or one JSON object as the server's "params"
 * (bit 7 set). A refusal must come with a message that names something.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static size_t n_labs;
	const struct lab_desc *lab;
	struct lab_params p;
	char err[512], *text;
	const char *bad = NULL;

	if (!n_labs)
		while (lab_registry[n_labs])
			n_labs++;
	if (size < 1 || size > 4096)
		return 0;
	lab = lab_registry[(data[0] & 0x7f) % n_labs];
	lab_params_init(&p, lab);
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	if (data[0] & 0x80) {
		json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
		const char *key;
		json_t *val;

		json_object_foreach(o, key, val) {
			err[0] = '\0';
			if (lab_param_set_json(&p, key, val, err, sizeof err) < 0 && !err[0])
				abort();
		}
		json_decref(o);
	} else {
		char *line = text, *nl;

		for (; line; line = nl) {
			nl = strchr(line, '\n');
			if (nl)
				*nl++ = '\0';
			err[0] = '\0';
			if (lab_param_set_kv(&p, line, err, sizeof err) < 0 && !err[0])
				abort();
		}
	}
	check_values(&p);
	err[0] = '\0';
	if (lab_params_check(&p, &bad, err, sizeof err) < 0 && !err[0])
		abort();
	free(text);
	return 0;
}
