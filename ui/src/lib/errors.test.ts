import { describe, expect, it } from "vitest";
import type { UiError } from "./bindings/papo";
import { ERROR_KEYS, errorText } from "./errors";
import { dictionaries } from "./i18n";

describe("errors", () => {
  it("explains the codes it knows in the UI's words", () => {
    const e: UiError = { code: "invalid_credentials", message: "invalid_credentials (HTTP 401): nope" };
    expect(errorText("en", e)).toBe("Wrong username or password.");
    expect(errorText("pt-BR", { code: "not_signed_in", message: "not signed in" } satisfies UiError)).toBe(
      "Entre para enviar.",
    );
  });

  it("shows the core's message for the other codes", () => {
    const e: UiError = { code: "rate_limited", message: "too many requests" };
    expect(errorText("en", e)).toBe("Something went wrong: too many requests");
    expect(errorText("en", { code: "cache", message: "sqlite: disk full" } satisfies UiError)).toBe(
      "Something went wrong: sqlite: disk full",
    );
  });

  it("shows anything else as text", () => {
    expect(errorText("en", new Error("boom"))).toBe("Something went wrong: Error: boom");
    expect(errorText("en", "plain")).toBe("Something went wrong: plain");
  });

  it("gives every error message key a code", () => {
    const mapped = new Set(Object.values(ERROR_KEYS));
    const keys = Object.keys(dictionaries.en).filter((k) => k.startsWith("error.") && k !== "error.generic");
    expect([...mapped].sort()).toEqual(keys.sort());
  });
});
