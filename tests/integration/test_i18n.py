"""test_i18n.py: every interface string and every lab message id has English and Chinese text; the CLI follows LANG."""
import glob
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import binary  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LANGS = ("en", "zh-CN")
# Textbook terms: where the English says the left, the Chinese must say the right.
TERMS = {
    "three-way handshake": "三次握手",
    "accept queue": "全连接队列",
    "SYN queue": "半连接队列",
    "stream of bytes": "字节流",
    "TIME_WAIT": "TIME_WAIT",
    "four-way": "四次挥手",
}
# Keys built at run time from a fixed set of values.
FAMILIES = {"run.status.": ["running", "ok", "error", "cancelled", "timeout"],
            "role.": ["client", "server"],
            "hs.gone.": ["rst", "timer_expired", "reused", "not_listed"],
            "hs.match.": ["same", "different_packet", "kernel_only", "inferred_only", "consistent",
                          "inconsistent", "unobserved"]}


def table(lang):
    with open(os.path.join(ROOT, "web", "i18n", f"{lang}.json"), encoding="utf-8") as f:
        return json.load(f)


def missing(keys, where):
    """Keys absent from either table, as 'key (where) in LANG' lines."""
    out = []
    for lang in LANGS:
        t = table(lang)
        out += [f"{k} ({where}) missing in {lang}" for k in sorted(keys) if k not in t]
    return out


def sources(pattern):
    for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
        with open(path, encoding="utf-8") as f:
            yield os.path.relpath(path, ROOT), f.read()


def note_calls():
    """(file, key, text-argument) of every ev_note call in the C sources."""
    sys.path.insert(0, os.path.join(ROOT, "server", "tools"))
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader(
        "i18n_move_notes", os.path.join(ROOT, "server", "tools", "i18n-move-notes"))
    spec = importlib.util.spec_from_loader("i18n_move_notes", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    found = []
    for pattern in ("labs/**/*.c", "server/**/*.c"):
        for path, src in sources(pattern):
            for _s, _e, args in mod.calls(src):
                if len(args) != 4:
                    continue
                if "const char" in src[args[1][0]:args[1][1]]:
                    continue  # the definition, not a call
                key = mod.c_string(src[args[1][0]:args[1][1]])
                text = src[args[3][0]:args[3][1]].strip()
                found.append((path, key, text))
    return found


@test
def tables_have_the_same_keys_and_placeholders():
    en, zh = table("en"), table("zh-CN")
    eq(sorted(set(en) - set(zh)), [], "keys only in English")
    eq(sorted(set(zh) - set(en)), [], "keys only in Chinese")
    ph = re.compile(r"\{([a-z_]+)\}")
    for k in en:
        check(isinstance(en[k], str) and en[k].strip(), f"en {k} is empty")
        check(isinstance(zh[k], str) and zh[k].strip(), f"zh-CN {k} is empty")
        eq(sorted(set(ph.findall(zh[k]))), sorted(set(ph.findall(en[k]))), f"placeholders of {k}")


@test
def every_lab_message_id_is_translated_and_not_in_c():
    calls = note_calls()
    check(len(calls) >= 10, f"found only {len(calls)} ev_note calls")
    bad = []
    for path, key, text in calls:
        if key is None:
            bad.append(f"{path}: an ev_note key that is not a string literal")
            continue
        bad += missing([f"note.{key}"], path)
        if text != "NULL":
            bad.append(f"{path}: note.{key} passes its text in C; run "
                       f"server/tools/i18n-move-notes to move it to web/i18n/en.json")
    check(not bad, "; ".join(bad))


@test
def every_interface_string_is_translated():
    keys = {}
    call = re.compile(r"""\b(?:t|tr|has)\(\s*(['"`])([^'"`$]+?)\1""")
    tmpl = re.compile(r"""\b(?:t|tr|has)\(\s*`([a-z_.-]+)\.\$\{""")
    for path, src in sources("web/**/*.js"):
        for m in call.finditer(src):
            keys.setdefault(m.group(2), path)
        for m in tmpl.finditer(src):
            prefix = m.group(1) + "."
            for v in FAMILIES.get(prefix, []):
                keys.setdefault(prefix + v, path)
    for path, src in sources("web/**/*.html"):
        for m in re.finditer(r'data-i18n="([^"]+)"', src):
            keys.setdefault(m.group(1), path)
        for m in re.finditer(r'data-i18n-attr="([^"]+)"', src):
            for pair in m.group(1).split(","):
                keys.setdefault(pair.split(":")[1].strip(), path)
    check(len(keys) > 100, f"found only {len(keys)} keys: the scan is broken")
    bad = []
    for k, path in keys.items():
        bad += missing([k], path)
    check(not bad, "; ".join(bad[:30]))


@test
def every_lab_title_and_parameter_is_translated():
    labs = json.loads(subprocess.run([binary(), "labs", "--json"], capture_output=True,
                                     text=True, check=True, timeout=20).stdout)
    bad = []
    for lab in labs:
        keys = [f"lab.{lab['name']}.title", f"lab.{lab['name']}.summary"]
        for p in lab["params"]:
            keys += [f"param.{lab['name']}.{p['name']}.title",
                     f"param.{lab['name']}.{p['name']}.help"]
            if p.get("unit"):
                keys.append(f"unit.{p['unit']}")
        bad += missing(keys, f"lab {lab['name']}")
    check(not bad, "; ".join(bad[:30]))


@test
def chinese_uses_the_textbook_terms():
    en, zh = table("en"), table("zh-CN")
    bad = [f"{k}: '{term}' is not '{want}'" for k in en for term, want in TERMS.items()
           if term.lower() in en[k].lower() and want not in zh[k]]
    check(not bad, "; ".join(bad))
    check(any("三次握手" in v for v in zh.values()), "三次握手 is used somewhere")


@test
def events_carry_english_text_from_the_tables():
    p = subprocess.run([binary(), "run", "tcp-echo", "-p", "clients=2", "--json"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "LANG": "zh_CN.UTF-8"})
    eq(p.returncode, 0, f"exit ({p.stderr})")
    notes = [json.loads(line) for line in p.stdout.splitlines() if '"note"' in line]
    notes = [n for n in notes if n["type"] == "note"]
    check(notes, "the run has notes")
    en = table("en")
    for n in notes:
        # Placeholders filled from the note's own params, as labs/i18n.c does.
        want = re.sub(r"\{([a-z_]+)\}", lambda m: str(n["params"].get(m.group(1), m.group(0))),
                      en[f"note.{n['key']}"])
        eq(n["text"], want, f"text of {n['key']} (English whatever LANG)")


@test
def cli_follows_lang():
    def notes(lang):
        p = subprocess.run([binary(), "run", "tcp-echo", "-p", "clients=2"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "LANG": lang, "LC_ALL": ""})
        eq(p.returncode, 0, f"exit with LANG={lang}")
        return [ln for ln in p.stdout.splitlines() if re.match(r"^\s+\d+\.\d+\s+(note|说明):", ln)]
    zh, en = notes("zh_CN.UTF-8"), notes("C.UTF-8")
    check(zh and en, "notes printed in both")
    check(all("说明:" in ln for ln in zh), f"Chinese notes: {zh[:2]}")
    check(any("三次握手" in ln for ln in zh), "the accept-queue note in Chinese")
    check(all("note:" in ln for ln in en) and any("three-way handshake" in ln for ln in en),
          f"English notes: {en[:2]}")


@test
def every_question_and_explanation_is_translated():
    """Every lab's questions and choices (socklab labs --json), every
    explanation id the C rules can give (their why cases, read from
    labs/quiz/q_*.c), and every explanation the recorded runs in
    tests/data/quiz produce, in both languages, with no placeholder left."""
    p = subprocess.run([binary(), "labs", "--json"], capture_output=True, text=True, timeout=30)
    eq(p.returncode, 0, "socklab labs --json")
    keys = {}
    ids = {}
    for lab in json.loads(p.stdout):
        for q in lab.get("questions", []):
            base = f"quiz.{lab['name']}.{q['id']}"
            ids.setdefault(lab["name"], []).append(q["id"])
            keys[base] = "labs --json"
            for c in q.get("choices", []):
                keys[f"{base}.c.{c}"] = "labs --json"
            if q.get("unit"):
                keys[f"quiz.unit.{q['unit']}"] = "labs --json"
    check(len(ids) >= 8, f"banks found: {sorted(ids)}")
    bad = missing(keys, "question")
    # A why case of a rule file must be one of its lab's questions' keys.
    en = table("en")
    for path, src in sources("labs/quiz/q_*.c"):
        lab = re.search(r'quiz_bank_\w+ = \{"([a-z-]+)"', src).group(1)
        for stmt in re.findall(r"t->why\s*=([^;]+);", src):
            for w in re.findall(r'(?:^|[?:])\s*"([a-z_*]+)"', stmt):
                if w.startswith("*"):
                    bad += missing([f"quiz.why.{w[1:]}"], path)
                elif not any(f"quiz.{lab}.{q}.why.{w}" in en for q in ids.get(lab, [])):
                    bad.append(f"{path}: why case '{w}' has no quiz.{lab}.QUESTION.why.{w}")
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "quiz", "*.jsonl"))):
        for lang in ("C.UTF-8", "zh_CN.UTF-8"):
            g = subprocess.run([binary(), "grade", path, "--json"], capture_output=True, text=True,
                               timeout=30, env={**os.environ, "LANG": lang, "LC_ALL": ""})
            eq(g.returncode, 0, f"grade {path}")
            for v in json.loads(g.stdout):
                w = v["why"]
                bad += missing([w["key"]], os.path.basename(path))
                if "{" in w["text"] or w["text"] == w["key"]:
                    bad.append(f"{os.path.basename(path)} {v['q']} ({lang}): {w['text']}")
    check(not bad, "; ".join(bad[:30]))


if __name__ == "__main__":
    run(timeout=120)
