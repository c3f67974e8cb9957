"""Every text a learner reads exists in English and Japanese; this picks one.

HANDSON_LANG=ja|en chooses; otherwise the locale does (ja_JP.UTF-8 -> Japanese).
"""
import locale
import os

LANGUAGES = ("en", "ja")


def language():
    chosen = os.environ.get("HANDSON_LANG", "").strip().lower()
    if chosen in LANGUAGES:
        return chosen
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(variable, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    try:
        current = locale.getlocale()[0] or ""
    except ValueError:
        current = ""
    return "ja" if current.lower().startswith("ja") else "en"


def say(en, ja):
    """The text in the learner's language. Both are required, so none is ever missing."""
    return ja if language() == "ja" else en


def pick(texts):
    """The learner's language from a {"en": ..., "ja": ...} table (as in steps.toml)."""
    return texts.get(language()) or texts["en"]
