import { describe, expect, it } from "vitest";
import { dictionaries, resolveLocale, translate } from "./i18n";

describe("i18n", () => {
  it("follows the OS locale unless the setting says otherwise", () => {
    expect(resolveLocale("system", "pt-BR")).toBe("pt-BR");
    expect(resolveLocale("system", "pt")).toBe("pt-BR");
    expect(resolveLocale("system", "de-DE")).toBe("en");
    expect(resolveLocale("en", "pt-BR")).toBe("en");
    expect(resolveLocale("pt_br", "en-US")).toBe("pt-BR");
  });

  it("fills placeholders", () => {
    expect(translate("en", "banner.retrying", { seconds: 4 })).toBe("Connection lost. Retrying in 4 s");
    expect(translate("pt-BR", "chat.typing_one", { name: "joao" })).toBe("joao está digitando…");
  });

  it("has every key in both languages, with the same placeholders", () => {
    const en = dictionaries.en;
    const pt = dictionaries["pt-BR"];
    expect(Object.keys(pt).sort()).toEqual(Object.keys(en).sort());
    const vars = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const k of Object.keys(en) as (keyof typeof en)[]) {
      expect(vars(pt[k]), k).toEqual(vars(en[k]));
    }
  });
});
