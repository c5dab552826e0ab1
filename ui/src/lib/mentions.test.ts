import { describe, expect, it } from "vitest";
import { completeMention, mentionParts, typedMention } from "./mentions";

const names = (t: string) => mentionParts(t).flatMap((p) => (p.mention ? [p.mention] : []));

describe("mentions", () => {
  it("follow the server's rule (the cases of papo_protocol's test)", () => {
    expect(names("oi @ana e @joao_2, (@bia) @ana")).toEqual(["ana", "joao_2", "bia", "ana"]);
    expect(names("mail a@bcd.de, @ab, @Ana, @toolongnamexxxxxxxxxx")).toEqual([]);
    expect(names("@ana.")).toEqual(["ana"]);
    expect(names("ç@ana")).toEqual(["ana"]);
  });

  it("keep every character of the text, in order", () => {
    const t = "oi @ana, tudo bem? @x @bia";
    expect(mentionParts(t).map((p) => p.text).join("")).toBe(t);
  });

  it("completion reads the @prefix before the caret and replaces it", () => {
    expect(typedMention("oi @jo", 6)).toEqual({ start: 3, prefix: "jo" });
    expect(typedMention("@", 1)).toEqual({ start: 0, prefix: "" });
    expect(typedMention("mail a@b", 8)).toBeNull();
    expect(typedMention("oi jo", 5)).toBeNull();
    expect(completeMention("oi @jo tudo", 6, 3, "joao")).toEqual({ text: "oi @joao  tudo", caret: 9 });
  });
});
