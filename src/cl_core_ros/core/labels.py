"""Label registry: class names <-> integer ids, with validation.

Names are stripped of surrounding white space, must be non-empty, at most ``max_length``
characters and free of control/format characters (Unicode categories Cc, Cf, Zl, Zp). Names are
case-sensitive. A forgotten class frees its id; :meth:`LabelRegistry.add` reuses the lowest free
id (the learner clears every trace of a forgotten class, so the id starts clean).
"""

from collections.abc import Mapping
import unicodedata

_FORBIDDEN_CATEGORIES = {'Cc', 'Cf', 'Zl', 'Zp'}


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
        return isinstance(name, str) and name.strip() in self._by_name

    def validate(self, name: object) -> str:
        """Return the canonical (stripped) name or raise ValueError saying what is wrong."""
        if not isinstance(name, str):
            raise ValueError(f'label must be a string, got {type(name).__name__}')
        clean = name.strip()
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

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output, validating every name."""
        ids, names = list(state['ids']), list(state['names'])
        if len(ids) != len(names) or len(set(ids)) != len(ids):
            raise ValueError('label state: ids and names do not match')
        if len(ids) > self.max_classes:
            raise ValueError(f'label state has {len(ids)} classes, max_classes is '
                             f'{self.max_classes}')
        clean = [self.validate(n) for n in names]
        if len(set(clean)) != len(clean):
            raise ValueError('label state: duplicate names')
        if any(int(i) < 0 for i in ids):
            raise ValueError('label state: negative id')
        self._by_id = {int(i): n for i, n in zip(ids, clean)}
        self._by_name = {n: int(i) for i, n in zip(ids, clean)}
