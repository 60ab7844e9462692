/* i18n.c: message texts by key from the translation tables compiled into the binary (web/i18n/LANG.json). */
#include "i18n.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assets.h"

static const char *const langs[] = {"en", "zh-CN"};
#define N_LANGS (sizeof langs / sizeof langs[0])

/* Two tiers per language. The messages labs render (ids note.*, cli.*,
 * run.*, role.*, parity.*), compact: build/i18n_labs.c, written by
 * server/tools/i18n_subset.c from web/i18n/LANG.json. The whole files (the
 * dashboard's, embedded with web/) took every run about 4 ms to parse, both
 * languages; a run with --json needs the English subset alone. An id the
 * subset lacks (a NAME_key param may name any message) is looked up in the
 * whole file, parsed then, once. */
extern const struct asset i18n_lab_tables[];

enum { TIER_LABS, TIER_ALL, N_TIERS };

/* Each written once under its pthread_once, read-only afterwards. */
static json_t *tables[N_TIERS][N_LANGS];
static pthread_once_t once[N_TIERS][N_LANGS] = {{PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT},
						 {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT}};

static void load_table(int tier, size_t lang)
{
	const struct asset *set = tier == TIER_LABS ? i18n_lab_tables : assets;
	char path[64];
	size_t k;

	if (tier == TIER_LABS)
		snprintf(path, sizeof path, "%s", langs[lang]);
	else
		snprintf(path, sizeof path, "/i18n/%s.json", langs[lang]);
	for (k = 0; set[k].path; k++) {
		if (strcmp(set[k].path, path) != 0)
			continue;
		tables[tier][lang] = json_loadb((const char *)set[k].data, set[k].len, 0, NULL);
		if (tables[tier][lang] && !json_is_object(tables[tier][lang])) {
			json_decref(tables[tier][lang]);
			tables[tier][lang] = NULL;
		}
		break;
	}
}

static void load_labs_en(void)
{
	load_table(TIER_LABS, 0);
}

static void load_labs_zh(void)
{
	load_table(TIER_LABS, 1);
}

static void load_all_en(void)
{
	load_table(TIER_ALL, 0);
}

static void load_all_zh(void)
{
	load_table(TIER_ALL, 1);
}

static void (*const loaders[N_TIERS][N_LANGS])(void) = {{load_labs_en, load_labs_zh},
							 {load_all_en, load_all_zh}};

static const char *lookup(size_t lang, const char *id)
{
	const char *s = NULL;
	int tier;

	for (tier = 0; tier < N_TIERS && !s; tier++) {
		pthread_once(&once[tier][lang], loaders[tier][lang]);
		if (tables[tier][lang])
			s = json_string_value(json_object_get(tables[tier][lang], id));
	}
	return s;
}

/* Append n bytes to a growing buffer; -1 when out of memory. */
static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 128;
		char *nb;
		while (c < *len + n + 1)
			c *= 2;
		nb = realloc(*buf, c);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* The text of a placeholder NAME's companion param NAME_key (a message id)
 * in language lang, or NULL when there is none or no table has that id. */
static const char *keyed(size_t lang, const json_t *params, const char *name)
{
	char k[80];
	const char *id, *s;

	if (!params || snprintf(k, sizeof k, "%s_key", name) >= (int)sizeof k)
		return NULL;
	id = json_string_value(json_object_get(params, k));
	if (!id)
		return NULL;
	s = lookup(lang, id);
	return s ? s : lookup(0, id);
}

static char *fill(size_t lang, const char *templ, const json_t *params)
{
	char *buf = NULL, num[64];
	size_t len = 0, cap = 0;
	const char *p = templ;

	if (put(&buf, &len, &cap, "", 0) < 0)
		return NULL;
	while (*p) {
		const char *open = strchr(p, '{'), *close;
		const json_t *v;
		char name[64];
		size_t n;
		int ok;

		if (!open) {
			if (put(&buf, &len, &cap, p, strlen(p)) < 0)
				goto oom;
			break;
		}
		if (put(&buf, &len, &cap, p, (size_t)(open - p)) < 0)
			goto oom;
		close = strchr(open, '}');
		n = close ? (size_t)(close - open - 1) : 0;
		ok = close && n > 0 && n < sizeof name && strspn(open + 1, "abcdefghijklmnopqrstuvwxyz_") == n;
		v = NULL;
		if (ok) {
			memcpy(name, open + 1, n);
			name[n] = '\0';
			v = params ? json_object_get(params, name) : NULL;
		}
		if (!v) {
			/* Not a placeholder we can fill: keep the text as written. */
			if (put(&buf, &len, &cap, open, 1) < 0)
				goto oom;
			p = open + 1;
			continue;
		}
		if (ok && keyed(lang, params, name)) {
			/* A role or another word the reader's language names. */
			const char *w = keyed(lang, params, name);

			if (put(&buf, &len, &cap, w, strlen(w)) < 0)
				goto oom;
		} else if (json_is_string(v)) {
			if (put(&buf, &len, &cap, json_string_value(v), strlen(json_string_value(v))) < 0)
				goto oom;
		} else {
			if (json_is_integer(v))
				snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
			else if (json_is_real(v))
				snprintf(num, sizeof num, "%g", json_real_value(v));
			else if (json_is_boolean(v))
				snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
			else
				snprintf(num, sizeof num, "null");
			if (put(&buf, &len, &cap, num, strlen(num)) < 0)
				goto oom;
		}
		p = close + 1;
	}
	return buf;
oom:
	free(buf);
	return NULL;
}

char *i18n_text(const char *lang, const char *id, const json_t *params)
{
	const char *templ = NULL;
	size_t i, lang_i = 0;

	for (i = 1; lang && i < N_LANGS && !templ; i++)
		if (!strcmp(lang, langs[i])) {
			templ = lookup(i, id);
			lang_i = templ ? i : 0;
		}
	if (!templ)
		templ = lookup(0, id);
	return templ ? fill(lang_i, templ, params) : NULL;
}

char *i18n_fill(const char *templ, const json_t *params)
{
	return fill(0, templ, params);
}

const char *i18n_lang_from_env(const char *(*env)(const char *name))
{
	static const char *const vars[] = {"LC_ALL", "LC_MESSAGES", "LANG"};
	size_t i;

	for (i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = env ? env(vars[i]) : getenv(vars[i]);
		if (!v || !*v)
			continue;
		return !strncmp(v, "zh", 2) ? "zh-CN" : "en";
	}
	return I18N_DEFAULT;
}
