import { describe, expect, it } from "vitest";
import { computeOffsets, rowAt, visibleRange } from "./virtual";

describe("virtual list math", () => {
  it("uses measured heights and estimates the rest", () => {
    const o = computeOffsets([10, undefined, 30], 20);
    expect([...o]).toEqual([0, 10, 30, 60]);
  });

  it("finds the row under a position", () => {
    const o = computeOffsets([10, 20, 30], 0);
    expect(rowAt(o, 0)).toBe(0);
    expect(rowAt(o, 9.9)).toBe(0);
    expect(rowAt(o, 10)).toBe(1);
    expect(rowAt(o, 59)).toBe(2);
    expect(rowAt(o, 1000)).toBe(2);
  });

  it("renders only what is visible in a 10k-row list", () => {
    const o = computeOffsets(new Array(10_000).fill(undefined), 50);
    const [start, end] = visibleRange(o, 250_000, 600, 5);
    expect(start).toBe(4995);
    expect(end - start).toBeLessThan(30);
    expect(visibleRange(computeOffsets([], 50), 0, 600)).toEqual([0, 0]);
  });
});
