// Between CodeMirror's changes (UTF-16 offsets) and ot.js ops (code
// points). CodeMirror counts a JavaScript string's units, the hub counts
// Unicode scalar values: an emoji is 2 here and 1 there, so every offset
// crosses through `charCount` / `advance`.

import type { ChangeSet, ChangeSpec, Text } from '@codemirror/state';
import { advance, Builder, charCount, type WireOp } from './ot.js';

/// The op for `changes`, made on `before`.
export function changesToOp(before: Text, changes: ChangeSet): WireOp {
  const op = new Builder();
  let at = 0;
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    op.retain(charCount(before.sliceString(at, fromA)));
    op.insert(inserted.toString());
    op.delete(charCount(before.sliceString(fromA, toA)));
    at = toA;
  });
  op.retain(charCount(before.sliceString(at)));
  return op.ops;
}

/// CodeMirror changes for `op` on `text` (the whole document).
export function opToChanges(text: string, op: WireOp): ChangeSpec[] {
  const specs: { from: number; to?: number; insert?: string }[] = [];
  let at = 0;
  for (const c of op) {
    if (typeof c === 'string') {
      specs.push({ from: at, insert: c });
    } else if (c > 0) {
      at = advance(text, at, c);
    } else {
      const end = advance(text, at, -c);
      const last = specs[specs.length - 1];
      // An insert followed by a delete at one place is one replacement.
      if (last && last.from === at && last.to === undefined) last.to = end;
      else specs.push({ from: at, to: end });
      at = end;
    }
  }
  if (at !== text.length) throw new Error('op does not cover the whole document');
  return specs;
}

/// The UTF-16 offset of code point `chars` in `text`, clamped to its end.
export function charToUnit(text: string, chars: number): number {
  try {
    return advance(text, 0, chars);
  } catch {
    return text.length;
  }
}
