"""Label registry: class names <-> integer ids, with validation.

Labels are text, not code points: every name that enters (a service request, a rename, a
stored state of an older version) is brought to one normal form, :func:`normalize_label`:
Unicode NFC (so "café" typed as one code point and as "e" + combining accent is one label),
surrounding white space stripped. The normal form is what is stored, compared and returned
(``list_classes`` shows the label as taught, composed).

Case and width stay significant: "Mug" and "mug", or full-width "ｍｕｇ" and "mug", are different
labels (NFKC or case folding would also merge texts that differ in meaning, like "²" and "2";
and the label must come back as it was taught). Teaching a new label that differs from a known
one only in case or width is allowed, and :meth:`LabelRegistry.similar` names the known one so
that the caller can say so.

A name must be non-empty, at most ``max_length`` code points (after NFC) and free of
control/format characters (Unicode categories Cc, Cf, Zl, Zp). A forgotten class frees its id;
:meth:`LabelRegistry.add` reuses the lowest free id (the learner clears every trace of a
forgotten class, so the id starts clean).
"""

from collections.abc import Mapping
import unicodedata

_FORBIDDEN_CATEGORIES = {'Cc', 'Cf', 'Zl', 'Zp'}


def normalize_label(name: str) -> str:
    """Return the normal form of a label: NFC, surrounding white space stripped."""
    return unicodedata.normalize('NFC', name).strip()


def _loose_key(name: str) -> str:
    """Key under which labels differing only in case or width (NFKC) are alike."""
    return unicodedata.normalize('NFKC', unicodedata.normalize('NFKC', name).casefold())


class LabelRegistry:
    """Bidirectional name <-> id map with a maximum number of classes."""

    def __init__(self, *, max_classes: int = 1000, max_length: int = 64):
        if max_classes < 1 or max_length < 1:
            raise ValueError('max_classes and max_length must be positive')
        self.max_classes = max_classes
        self.max_length = max_length
        self._by_name: dict[str, int] = {}
        self._by_id: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_label(name) in self._by_name

    def validate(self, name: object) -> str:
        """Return the normal form (NFC, stripped) or raise ValueError saying what is wrong."""
        if not isinstance(name, str):
            raise ValueError(f'label must be a string, got {type(name).__name__}')
        clean = normalize_label(name)
        if not clean:
            raise ValueError('label must not be empty or only white space')
        if len(clean) > self.max_length:
            raise ValueError(f'label is {len(clean)} characters long; at most '
                             f'{self.max_length} allowed')
        for ch in clean:
            if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
                raise ValueError(f'label contains a control character (U+{ord(ch):04X})')
        return clean

    def id_of(self, name: str) -> int:
        """Return the id of ``name``; KeyError if unknown."""
        clean = self.validate(name)
        if clean not in self._by_name:
            raise KeyError(f'unknown label {clean!r}')
        return self._by_name[clean]

    def get(self, name: str) -> int | None:
        """Return the id of ``name`` or None (the name is validated)."""
        return self._by_name.get(self.validate(name))

    def similar(self, name: str) -> str | None:
        """Return a known label that differs from ``name`` only in case or width, or None."""
        clean = self.validate(name)
        if clean in self._by_name:
            return None
        key = _loose_key(clean)
        return next((known for known in self._by_name if _loose_key(known) == key), None)

    def name_of(self, class_id: int) -> str:
        """Return the name of ``class_id``; KeyError if free."""
        return self._by_id[class_id]

    def add(self, name: str) -> int:
        """Register ``name`` and return its new id (ValueError if present or full)."""
        clean = self.validate(name)
        if clean in self._by_name:
            raise ValueError(f'label {clean!r} already exists')
        if len(self._by_id) >= self.max_classes:
            raise ValueError(f'max_classes ({self.max_classes}) reached; forget a class first')
        class_id = next(i for i in range(len(self._by_id) + 1) if i not in self._by_id)
        self._by_name[clean] = class_id
        self._by_id[class_id] = clean
        return class_id

    def rename(self, old: str, new: str) -> int:
        """Rename ``old`` to ``new`` keeping the id; return the id."""
        class_id = self.id_of(old)
        clean = self.validate(new)
        if clean == self._by_id[class_id]:
            return class_id
        if clean in self._by_name:
            raise ValueError(f'label {clean!r} already exists')
        del self._by_name[self._by_id[class_id]]
        self._by_name[clean] = class_id
        self._by_id[class_id] = clean
        return class_id

    def remove(self, name: str) -> int:
        """Remove ``name``; return the freed id."""
        class_id = self.id_of(name)
        del self._by_name[self._by_id[class_id]]
        del self._by_id[class_id]
        return class_id

    def clear(self) -> None:
        """Remove every label."""
        self._by_name.clear()
        self._by_id.clear()

    def items(self) -> list[tuple[int, str]]:
        """Return ``(id, name)`` pairs sorted by id."""
        return sorted(self._by_id.items())

    def ids(self) -> list[int]:
        """Return the registered ids in increasing order."""
        return sorted(self._by_id)

    def state_dict(self) -> dict:
        """Return plain values (ids and names in id order)."""
        items = self.items()
        return {'ids': [i for i, _ in items], 'names': [n for _, n in items]}

    def load_state_dict(self, state: Mapping) -> list[str]:
        """Restore from :meth:`state_dict` output, bringing every name to the normal form.

        States stored before labels were normalized may hold two spellings of one text (say
        "café" composed and decomposed) as two classes. Both are kept (their knowledge differs);
        the one with the higher id is renamed to "<label> #<id>" so that each can be named.

        Returns:
            one message per name that was renamed that way (empty for a current state).

        Raises:
            ValueError: malformed state, an invalid name, or two names that were equal
                already as stored.

        """
        ids, names = list(state['ids']), list(state['names'])
        if len(ids) != len(names) or len(set(ids)) != len(ids):
            raise ValueError('label state: ids and names do not match')
        if len(ids) > self.max_classes:
            raise ValueError(f'label state has {len(ids)} classes, max_classes is '
                             f'{self.max_classes}')
        if len({n.strip() if isinstance(n, str) else n for n in names}) != len(names):
            raise ValueError('label state: duplicate names')
        if any(int(i) < 0 for i in ids):
            raise ValueError('label state: negative id')
        by_id, by_name, notes = {}, {}, []
        for class_id, name in sorted(zip((int(i) for i in ids), names)):
            clean = self.validate(name)
            if clean in by_name:
                renamed = self._distinct(clean, class_id, by_name)
                notes.append(f'classes {by_name[clean]} and {class_id} were stored as two '
                             f'spellings of the label {clean!r} ({name!r}); class {class_id} is '
                             f'now {renamed!r}: rename or forget it')
                clean = renamed
            by_id[class_id], by_name[clean] = clean, class_id
        self._by_id, self._by_name = by_id, by_name
        return notes

    def _distinct(self, name: str, class_id: int, taken: Mapping[str, int]) -> str:
        """Return "<name> #<id>" (shortened to fit max_length), unlike every taken name."""
        n = 0
        while True:
            suffix = f' #{class_id}' + (f'.{n}' if n else '')
            candidate = normalize_label(name[:max(self.max_length - len(suffix), 1)]) + suffix
            if candidate not in taken:
                return candidate
            n += 1
