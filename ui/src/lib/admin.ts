// What the Admin page computes from its inputs and the stats, kept pure so Vitest can check it.
import type { AdminAction } from "./bindings/papo";

export type AdminKind = "remove_post" | "remove_comment" | "suspend" | "unsuspend";

const USERNAME = /^[a-z0-9_]{3,20}$/;

/** The action the form describes, or null when the target does not fit it. */
export function adminActionOf(kind: AdminKind, target: string): AdminAction | null {
  const t = target.trim();
  if (kind === "remove_post" || kind === "remove_comment") {
    if (!/^[1-9][0-9]{0,15}$/.test(t)) return null;
    const id = Number(t);
    return kind === "remove_post" ? { action: "remove_post", post_id: id } : { action: "remove_comment", comment_id: id };
  }
  const name = t.replace(/^@/, "");
  if (!USERNAME.test(name)) return null;
  return { action: kind, username: name };
}

/** The busiest request kinds, busiest first (ties by name). */
export function topRequests(rates: { [k: string]: number | undefined }, n: number): [string, number][] {
  return Object.entries(rates)
    .filter((e): e is [string, number] => typeof e[1] === "number" && e[1] > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, n);
}

export function formatRate(perSec: number): string {
  return perSec >= 10 ? `${Math.round(perSec)}/s` : `${perSec.toFixed(1)}/s`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
