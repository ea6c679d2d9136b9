// Text helpers shared with protocol/src/text.rs.

const encoder = new TextEncoder();
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK = 0xffffffffffffffffn;

/// `text::checksum`: 64-bit FNV-1a of the UTF-8 bytes, 16 hex digits.
/// BigInt because the multiply needs all 64 bits.
export function checksum(text: string): string {
  let hash = FNV_OFFSET;
  for (const byte of encoder.encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * FNV_PRIME) & MASK;
  }
  return hash.toString(16).padStart(16, '0');
}
