// The ot.js operation format, as protocol/src/ot.rs speaks it on the wire:
// an array of positive integers (retain), strings (insert) and negative
// integers (delete). Mirrors the `operational-transform` crate the hub
// uses, down to its normal form (an insert next to a delete goes first),
// because the hub and every client must transform identically.
// editor-plugins/fixtures/ot.json, computed by Rust, holds this file to it.
//
// Lengths count Unicode scalar values (code points), never UTF-16 units:
// an emoji is 1 here and 2 in a JavaScript string.

export type Component = number | string;
export type WireOp = Component[];

/// Code points in `text`.
export function charCount(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/// The UTF-16 offset `chars` code points after UTF-16 offset `from`.
export function advance(text: string, from: number, chars: number): number {
  let i = from;
  for (let n = 0; n < chars; n++) {
    if (i >= text.length) throw new OtError(`position past the end of the text`);
    const unit = text.charCodeAt(i);
    i += unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

export class OtError extends Error {}

const isRetain = (c: Component | undefined): c is number => typeof c === 'number' && c > 0;
const isDelete = (c: Component | undefined): c is number => typeof c === 'number' && c < 0;
const isInsert = (c: Component | undefined): c is string => typeof c === 'string';

/// Builds ops in normal form, as the crate's `OperationSeq` does.
export class Builder {
  readonly ops: WireOp = [];

  retain(n: number): this {
    if (n === 0) return this;
    const last = this.ops.length - 1;
    if (isRetain(this.ops[last])) this.ops[last] = (this.ops[last] as number) + n;
    else this.ops.push(n);
    return this;
  }

  insert(text: string): this {
    if (text === '') return this;
    const ops = this.ops;
    const last = ops.length - 1;
    if (isInsert(ops[last])) {
      ops[last] = (ops[last] as string) + text;
    } else if (isDelete(ops[last])) {
      // Insert before a delete: one normal form for the same edit.
      if (isInsert(ops[last - 1])) ops[last - 1] = (ops[last - 1] as string) + text;
      else {
        ops.push(ops[last]);
        ops[last] = text;
      }
    } else ops.push(text);
    return this;
  }

  delete(n: number): this {
    if (n === 0) return this;
    const last = this.ops.length - 1;
    if (isDelete(this.ops[last])) this.ops[last] = (this.ops[last] as number) - n;
    else this.ops.push(-n);
    return this;
  }
}

/// Code points the op expects its text to have.
export function baseLength(op: WireOp): number {
  let n = 0;
  for (const c of op) if (typeof c === 'number') n += Math.abs(c);
  return n;
}

/// Code points of the text the op produces.
export function targetLength(op: WireOp): number {
  let n = 0;
  for (const c of op) {
    if (isRetain(c)) n += c;
    else if (isInsert(c)) n += charCount(c);
  }
  return n;
}

export function isNoop(op: WireOp): boolean {
  return op.every(isRetain);
}

export function apply(text: string, op: WireOp): string {
  if (baseLength(op) !== charCount(text)) {
    throw new OtError(`op expects ${baseLength(op)} characters, the text has ${charCount(text)}`);
  }
  const out: string[] = [];
  let at = 0;
  for (const c of op) {
    if (isRetain(c)) {
      const end = advance(text, at, c);
      out.push(text.slice(at, end));
      at = end;
    } else if (isDelete(c)) at = advance(text, at, -c);
    else out.push(c as string);
  }
  return out.join('');
}

/// Splits an insert at code point `n` (never inside a surrogate pair).
function splitInsert(text: string, n: number): [string, string] {
  const at = advance(text, 0, n);
  return [text.slice(0, at), text.slice(at)];
}

/// `a` then `b` as one op.
export function compose(a: WireOp, b: WireOp): WireOp {
  if (targetLength(a) !== baseLength(b)) {
    throw new OtError('compose: the second op does not start where the first ends');
  }
  const out = new Builder();
  let i = 0;
  let j = 0;
  let x: Component | undefined = a[i++];
  let y: Component | undefined = b[j++];
  for (;;) {
    if (x === undefined && y === undefined) break;
    if (isDelete(x)) {
      out.delete(-x);
      x = a[i++];
      continue;
    }
    if (isInsert(y)) {
      out.insert(y);
      y = b[j++];
      continue;
    }
    if (x === undefined || y === undefined) throw new OtError('compose: ops of different lengths');
    if (isRetain(x) && isRetain(y)) {
      const n = Math.min(x, y);
      out.retain(n);
      [x, y] = next(x, y, n, a, b);
    } else if (isInsert(x) && isDelete(y)) {
      const len = charCount(x);
      if (len > -y) {
        x = splitInsert(x, -y)[1];
        y = b[j++];
      } else if (len === -y) {
        x = a[i++];
        y = b[j++];
      } else {
        y = y + len;
        x = a[i++];
      }
    } else if (isInsert(x) && isRetain(y)) {
      const len = charCount(x);
      if (len > y) {
        const [head, tail] = splitInsert(x, y);
        out.insert(head);
        x = tail;
        y = b[j++];
      } else if (len === y) {
        out.insert(x);
        x = a[i++];
        y = b[j++];
      } else {
        out.insert(x);
        y = y - len;
        x = a[i++];
      }
    } else if (isRetain(x) && isDelete(y)) {
      if (x > -y) {
        out.delete(-y);
        x = x + y;
        y = b[j++];
      } else if (x === -y) {
        out.delete(x);
        x = a[i++];
        y = b[j++];
      } else {
        out.delete(x);
        y = y + x;
        x = a[i++];
      }
    } else throw new OtError('compose: unexpected components');
  }
  return out.ops;

  // Consumes `n` from two retains, fetching the next of whichever ran out.
  function next(p: number, q: number, n: number, pa: WireOp, qb: WireOp): [Component | undefined, Component | undefined] {
    const np: Component | undefined = p === n ? pa[i++] : p - n;
    const nq: Component | undefined = q === n ? qb[j++] : q - n;
    return [np, nq];
  }
}

/// `[a', b']` such that `b' ∘ a == a' ∘ b`. On a tie (both insert at one
/// place) `a`'s insert goes first: pass the op the hub has not ordered yet
/// as `a`, as every Chorus client and the hub do.
export function transform(a: WireOp, b: WireOp): [WireOp, WireOp] {
  if (baseLength(a) !== baseLength(b)) throw new OtError('transform: ops of different base lengths');
  const aPrime = new Builder();
  const bPrime = new Builder();
  let i = 0;
  let j = 0;
  let x: Component | undefined = a[i++];
  let y: Component | undefined = b[j++];
  for (;;) {
    if (x === undefined && y === undefined) break;
    if (isInsert(x)) {
      aPrime.insert(x);
      bPrime.retain(charCount(x));
      x = a[i++];
      continue;
    }
    if (isInsert(y)) {
      aPrime.retain(charCount(y));
      bPrime.insert(y);
      y = b[j++];
      continue;
    }
    if (x === undefined || y === undefined) throw new OtError('transform: ops of different lengths');
    let n: number;
    if (isRetain(x) && isRetain(y)) {
      n = Math.min(x, y);
      aPrime.retain(n);
      bPrime.retain(n);
    } else if (isDelete(x) && isDelete(y)) {
      n = Math.min(-x, -y);
    } else if (isDelete(x) && isRetain(y)) {
      n = Math.min(-x, y);
      aPrime.delete(n);
    } else if (isRetain(x) && isDelete(y)) {
      n = Math.min(x, -y);
      bPrime.delete(n);
    } else throw new OtError('transform: unexpected components');
    x = consume(x as number, n, a);
    y = consume(y as number, n, b, true);
  }
  return [aPrime.ops, bPrime.ops];

  function consume(c: number, n: number, ops: WireOp, second = false): Component | undefined {
    const left = c > 0 ? c - n : c + n;
    if (left !== 0) return left;
    return second ? ops[j++] : ops[i++];
  }
}
