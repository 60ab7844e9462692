/* i18n.h: message texts by key from the translation tables compiled into the binary (web/i18n/LANG.json). */
#ifndef SOCKLAB_I18N_H
#define SOCKLAB_I18N_H

#include <jansson.h>

/*
 * The dashboard's translation files are the one home of every explanation a
 * lab emits: a note's key K is the message id "note.K". The tables are parsed
 * once, on first use, from the copies embedded with the rest of web/
 * (server/assets.h), and are read-only after that: every function here is
 * thread-safe (lab threads emit notes concurrently).
 */

/* The languages there are tables for. */
#define I18N_DEFAULT "en"

/* The text of message id in lang ("en", "zh-CN"; anything else is English),
 * with {name} placeholders filled from params (strings, integers, reals,
 * booleans; an unknown name stays as written). When params also has
 * "name_key", a message id (such as "role.client"), {name} is that id's text
 * in lang instead: a word such as a role name then reads in the reader's
 * language, while params' "name" keeps the English for other readers. Falls back to English when
 * lang lacks the id. A new string the caller frees, or NULL when no table
 * has the id. */
char *i18n_text(const char *lang, const char *id, const json_t *params);

/* The language a terminal user asked for through LC_ALL, LC_MESSAGES or LANG
 * (the first one set, as POSIX orders them): "zh-CN" for zh*, else "en".
 * env may be NULL (getenv is used). */
const char *i18n_lang_from_env(const char *(*env)(const char *name));

/* Fill {name} placeholders of templ from params into a new string (the
 * caller frees it), or NULL when out of memory; "name_key" ids in English.
 * Exposed for tests. */
char *i18n_fill(const char *templ, const json_t *params);

#endif
