// Merging by text when the hub can no longer catch this page up (its
// history no longer reaches back to the page's revision, or it refused
// the page's op): the same idea as the proxy's resync (ADR 0002,
// lsp-proxy/src/sync.rs). Three texts: `base`, the hub's text this page
// last knew; `mine`, the page's text (base plus unacknowledged edits);
// `theirs`, the hub's snapshot now. Both sides' changes are diffs from
// `base`; OT's transform rebases the page's onto the snapshot, so text
// both inserted is kept once each and neither side's edits are undone.

import { Builder, transform, type WireOp } from './ot.js';

/// The page's edits since `base` as one op to send on `theirs`, and the
/// others' edits as one op to apply to `mine`; both reach one text.
export function rebaseByText(base: string, mine: string, theirs: string): { send: WireOp; local: WireOp } {
  const [send, local] = transform(diff(base, mine), diff(base, theirs));
  return { send, local };
}

/// An op turning `a` into `b`: a shortest edit script over code points
/// (Myers), so edits at several places stay several small edits instead
/// of one replacement that would re-insert what others deleted between.
export function diff(a: string, b: string): WireOp {
  const x = [...a];
  const y = [...b];
  // Common prefix and suffix first: offline typing is usually a few
  // places in a long text, and Myers is quadratic in what differs only.
  let start = 0;
  while (start < x.length && start < y.length && x[start] === y[start]) start++;
  let endX = x.length;
  let endY = y.length;
  while (endX > start && endY > start && x[endX - 1] === y[endY - 1]) {
    endX--;
    endY--;
  }
  const out = new Builder().retain(start);
  for (const step of myers(x.slice(start, endX), y.slice(start, endY))) {
    if (step.kind === 'insert') out.insert(step.text);
    else if (step.kind === 'keep') out.retain(step.n);
    else out.delete(step.n);
  }
  return out.retain(x.length - endX).ops;
}

type Step = { kind: 'keep' | 'delete'; n: number } | { kind: 'insert'; text: string };

function myers(x: string[], y: string[]): Step[] {
  const n = x.length;
  const m = y.length;
  const max = n + m;
  // Past this many differences the texts have little in common: replace.
  const limit = Math.min(max, 2000);
  const v = new Map<number, number>([[1, 0]]);
  const trace: Map<number, number>[] = [];
  let found = -1;
  for (let d = 0; d <= limit && found < 0; d++) {
    trace.push(new Map(v));
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && (v.get(k - 1) ?? -1) < (v.get(k + 1) ?? -1));
      let i = down ? (v.get(k + 1) ?? 0) : (v.get(k - 1) ?? 0) + 1;
      let j = i - k;
      while (i < n && j < m && x[i] === y[j]) {
        i++;
        j++;
      }
      v.set(k, i);
      if (i >= n && j >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) return [{ kind: 'delete', n }, { kind: 'insert', text: y.join('') }];
  // Walk the trace back from (n, m), collecting steps in reverse.
  const steps: Step[] = [];
  let i = n;
  let j = m;
  for (let d = found; d > 0; d--) {
    const vd = trace[d];
    const k = i - j;
    const down = k === -d || (k !== d && (vd.get(k - 1) ?? -1) < (vd.get(k + 1) ?? -1));
    const prevK = down ? k + 1 : k - 1;
    const prevI = vd.get(prevK) ?? 0;
    const prevJ = prevI - prevK;
    const snakeFrom = down ? prevI : prevI + 1;
    if (i > snakeFrom) steps.push({ kind: 'keep', n: i - snakeFrom });
    if (down) steps.push({ kind: 'insert', text: y[prevJ] });
    else steps.push({ kind: 'delete', n: 1 });
    i = prevI;
    j = prevJ;
  }
  if (i > 0) steps.push({ kind: 'keep', n: i });
  return steps.reverse();
}
