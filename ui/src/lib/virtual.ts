// Windowing math for long lists: only the rows in (or near) the viewport are rendered.

/** offsets[i] = top of row i; offsets[n] = total height. Unmeasured rows use `estimate`. */
export function computeOffsets(heights: (number | undefined)[], estimate: number): Float64Array {
  const out = new Float64Array(heights.length + 1);
  let acc = 0;
  for (let i = 0; i < heights.length; i++) {
    out[i] = acc;
    acc += heights[i] ?? estimate;
  }
  out[heights.length] = acc;
  return out;
}

/** The first row whose bottom is below `y` (binary search). */
export function rowAt(offsets: Float64Array, y: number): number {
  const n = offsets.length - 1;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (offsets[mid + 1] <= y) lo = mid + 1;
    else hi = mid;
  }
  return Math.min(lo, Math.max(0, n - 1));
}

/** Rows to render: [start, end) covering the viewport plus `overscan` rows each side. */
export function visibleRange(
  offsets: Float64Array,
  scrollTop: number,
  viewport: number,
  overscan = 6,
): [number, number] {
  const n = offsets.length - 1;
  if (n <= 0) return [0, 0];
  const first = rowAt(offsets, scrollTop);
  const last = rowAt(offsets, scrollTop + Math.max(viewport, 1));
  return [Math.max(0, first - overscan), Math.min(n, last + 1 + overscan)];
}
