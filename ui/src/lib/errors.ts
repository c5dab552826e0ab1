// Errors from the shell's commands: `UiError {code, message}`, where `code` is the core's typed
// `CoreErrorCode` (generated from Rust). A code with a message of its own maps to its i18n key
// here; a code that does not exist, or a key that does not, fails the type check.
import type { CoreErrorCode, UiError } from "./bindings/papo";
import { translate, type Key, type Locale } from "./i18n";

/** The codes the UI explains in its own words; the others show their message in `error.generic`. */
export const ERROR_KEYS: { readonly [C in CoreErrorCode]?: Key } = {
  invalid_credentials: "error.invalid_credentials",
  unreachable: "error.unreachable",
  username_taken: "error.username_taken",
  invalid_username: "error.invalid_username",
  weak_password: "error.weak_password",
  msg_usage: "error.msg_usage",
  reply_gone: "error.reply_gone",
  not_signed_in: "error.not_signed_in",
  account_suspended: "error.account_suspended",
  admin_closed: "error.admin_closed",
};

export function isUiError(e: unknown): e is UiError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}

/** A readable message for whatever a command threw. */
export function errorText(locale: Locale, e: unknown): string {
  if (isUiError(e)) {
    const key = ERROR_KEYS[e.code];
    return key ? translate(locale, key) : translate(locale, "error.generic", { message: e.message });
  }
  return translate(locale, "error.generic", { message: String(e) });
}
