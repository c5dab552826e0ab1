// @vitest-environment jsdom
import { fireEvent, render, screen } from "@testing-library/svelte";
import { describe, expect, it, vi } from "vitest";
import type { OutboxEntry } from "../lib/bindings/papo";
import { translate } from "../lib/i18n";
import WedgedList from "./WedgedList.svelte";

const t = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate("en", key, vars);

const entries: OutboxEntry[] = [
  {
    client_id: "c1",
    event: "dm:send",
    conversation: "dm:zed",
    text: "hi zed",
    state: "wedged",
    attempts: 1,
    error: { code: "not_found", message: 'no user named "zed"' },
    wedge: { code: "refused", error: { code: "not_found", message: 'no user named "zed"' } },
  },
  {
    client_id: "c2",
    event: "post:like",
    conversation: "feed",
    text: null,
    state: "wedged",
    attempts: 5,
    error: null,
    wedge: { code: "no_answer", attempts: 5 },
  },
];

describe("WedgedList", () => {
  it("shows each wedged item with its reason and wires Retry / Discard to its client id", async () => {
    const retry = vi.fn(async () => "c1-new");
    const discard = vi.fn(async () => true);
    render(WedgedList, { entries, t, retry, discard });
    const items = screen.getAllByTestId("wedged-item");
    expect(items).toHaveLength(2);
    expect(items[0].textContent).toContain("Message: “hi zed”");
    expect(screen.getAllByTestId("wedged-reason").map((r) => r.textContent)).toEqual([
      'Refused by the server: no user named "zed"',
      "No answer from the server after 5 attempts",
    ]);
    expect(items.map((i) => i.dataset.reason)).toEqual(["refused", "no_answer"]);
    await fireEvent.click(screen.getAllByRole("button", { name: "Retry" })[0]);
    expect(retry).toHaveBeenCalledWith("c1");
    await fireEvent.click(screen.getAllByRole("button", { name: "Discard" })[1]);
    expect(discard).toHaveBeenCalledWith("c2");
  });

  it("renders nothing when no item is wedged", () => {
    const { container } = render(WedgedList, { entries: [], t, retry: vi.fn(), discard: vi.fn() });
    expect(container.querySelector("[data-testid=wedged]")).toBeNull();
  });
});
