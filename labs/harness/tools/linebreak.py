"""Text for a rich table cell that wraps between words, in Japanese too.

rich wraps only at spaces and folds a longer word at any character, so a Japanese title,
which has few spaces, is cut mid-word ("キュ" / "ー"). Here a line may also end after
Japanese punctuation, or where a kanji or katakana word follows kana (a particle or an
inflection ends a phrase there: 処理用の|キューを|用意する). A piece wider than the
cell is shortened with an ellipsis rather than cut.
"""
import re

from rich.cells import cell_len
from rich.measure import Measurement
from rich.text import Text

PUNCTUATION = "、。，．・：；！？）」』】"  # a line may end after these
SMALL_KANA = "ァィゥェォッャュョヮヵヶ"  # never the first of a line


def _hiragana(char):
    return "\u3041" <= char <= "\u309f"


def _starts_a_word(char):
    """A kanji, or a katakana that may begin a line (the range stops before ・ and the long-vowel ー)."""
    return "\u4e00" <= char <= "\u9fff" or ("\u30a1" <= char <= "\u30fa" and char not in SMALL_KANA)


def pieces(text):
    """``text`` cut where a line may end; each piece keeps its trailing space."""
    found, start, word = [], 0, 0  # word: where the current space-separated word began
    for index in range(1, len(text)):
        before, char = text[index - 1], text[index]
        if before == " " and char != " ":
            word = index
            # A number stays with what follows: the step's "1. ", the counter of "2 つ目".
            if re.fullmatch(r"\d+\.? ", text[start:index]):
                continue
            found.append(text[start:index])
            start = index
            continue
        after_punctuation = before in PUNCTUATION and char not in PUNCTUATION
        # A lone kana before a kanji is a counter or a prefix (つ目), not a phrase of its own.
        after_a_phrase = _hiragana(before) and _starts_a_word(char) and index - word >= 2
        if after_punctuation or after_a_phrase:
            found.append(text[start:index])
            start = index
    return [*found, text[start:]] if text else []


def _lines(text, width):
    lines = [""]
    for piece in pieces(text):
        if lines[-1] and cell_len(lines[-1] + piece.rstrip()) > width:
            lines[-1] = lines[-1].rstrip()
            lines.append("")
        lines[-1] += piece
    return [line.rstrip() for line in lines]


class Wrapped:
    """``text`` wrapped at the ends of ``pieces()``, for a table cell (rich measures and renders it)."""

    def __init__(self, text):
        self.text = text

    def __rich_measure__(self, console, options):
        # The table keeps the column as wide as the widest piece when the terminal has the room.
        widest = max((cell_len(piece.rstrip()) for piece in pieces(self.text)), default=0)
        return Measurement(widest, cell_len(self.text))

    def __rich_console__(self, console, options):
        for line in _lines(self.text, options.max_width):
            yield Text(line, no_wrap=True, overflow="ellipsis")
