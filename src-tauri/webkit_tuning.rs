//! WebKitGTK memory knobs, chosen by measurement (`bench/desktop.sh`; the numbers and the
//! trade-offs are in docs/desktop.md, "WebKit memory").
//!
//! Two places: environment variables WebKit reads when it starts its processes (set by
//! [`apply_env_defaults`] before GTK or WebKit runs), and settings of the webview and its
//! context ([`apply_webview_defaults`], once the window exists).
//!
//! Every default yields to the user: a variable already set in the environment is left as it
//! is, and `PAPO_WEBKIT_DEFAULTS=0` turns all of them off (WebKit's own behaviour). For
//! measuring each knob alone: `PAPO_WEBKIT_ACCEL=never|always` (hardware acceleration policy)
//! and `PAPO_WEBKIT_CACHE=viewer|browser|web` (cache model) override the settings.

/// The environment defaults: (variable, value).
pub const ENV_DEFAULTS: &[(&str, &str)] = &[
    // The web process hands its frames to the app through shared memory instead of DMA-BUF
    // (GBM) buffers: measured -80 to -100 MiB of the web process under software rendering.
    // (Disabling accelerated compositing saves as much, but WebKitWebDriver's screenshot then
    // never answers: scripts/e2e.sh hangs on it.)
    ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
];

/// Whether the defaults apply (`PAPO_WEBKIT_DEFAULTS=0` turns them off).
pub fn defaults_on() -> bool {
    defaults_on_from(std::env::var("PAPO_WEBKIT_DEFAULTS").ok().as_deref())
}

fn defaults_on_from(v: Option<&str>) -> bool {
    !matches!(v, Some("0") | Some("false") | Some("off"))
}

/// The variables to set: the defaults not already present in the environment.
pub fn env_to_set(
    defaults_on: bool,
    present: impl Fn(&str) -> bool,
) -> Vec<(&'static str, &'static str)> {
    if !defaults_on {
        return Vec::new();
    }
    ENV_DEFAULTS
        .iter()
        .copied()
        .filter(|(k, _)| !present(k))
        .collect()
}

/// Sets the environment defaults. Call first thing in `main`, before any thread is started and
/// before GTK/WebKit read the environment.
pub fn apply_env_defaults() {
    for (k, v) in env_to_set(defaults_on(), |k| std::env::var_os(k).is_some()) {
        std::env::set_var(k, v);
    }
}

/// The hardware acceleration policy to set, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Never,
    Always,
}

/// The cache model to set, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheModel {
    /// No memory cache of pages or resources: right for an app with one local page.
    DocumentViewer,
    DocumentBrowser,
    WebBrowser,
}

/// What the webview gets: (acceleration policy, cache model), from the overrides and defaults.
pub fn webview_choice(
    defaults_on: bool,
    accel: Option<&str>,
    cache: Option<&str>,
) -> Result<(Option<Accel>, Option<CacheModel>), String> {
    let accel = match accel {
        Some("never") => Some(Accel::Never),
        Some("always") => Some(Accel::Always),
        Some(other) => {
            return Err(format!(
                "PAPO_WEBKIT_ACCEL must be never or always, not {other:?}"
            ))
        }
        None => None,
    };
    let cache = match cache {
        Some("viewer") => Some(CacheModel::DocumentViewer),
        Some("browser") => Some(CacheModel::DocumentBrowser),
        Some("web") => Some(CacheModel::WebBrowser),
        Some(other) => {
            return Err(format!(
                "PAPO_WEBKIT_CACHE must be viewer, browser or web, not {other:?}"
            ))
        }
        // The UI is one local page: WebKit's page and resource caches only hold memory.
        None if defaults_on => Some(CacheModel::DocumentViewer),
        None => None,
    };
    Ok((accel, cache))
}

/// Applies the webview settings to the main window's webview (Linux: WebKitGTK).
pub fn apply_webview_defaults(window: &tauri::WebviewWindow) {
    let choice = webview_choice(
        defaults_on(),
        std::env::var("PAPO_WEBKIT_ACCEL").ok().as_deref(),
        std::env::var("PAPO_WEBKIT_CACHE").ok().as_deref(),
    );
    let (accel, cache) = match choice {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("{e}; WebKit's own setting is kept");
            (None, None)
        }
    };
    tracing::debug!(?accel, ?cache, "webview settings");
    #[cfg(target_os = "linux")]
    {
        let r = window.with_webview(move |w| {
            use webkit2gtk::{SettingsExt, WebContextExt, WebViewExt};
            let view = w.inner();
            if let (Some(a), Some(settings)) = (accel, WebViewExt::settings(&view)) {
                settings.set_hardware_acceleration_policy(match a {
                    Accel::Never => webkit2gtk::HardwareAccelerationPolicy::Never,
                    Accel::Always => webkit2gtk::HardwareAccelerationPolicy::Always,
                });
            }
            if let (Some(c), Some(context)) = (cache, view.context()) {
                context.set_cache_model(match c {
                    CacheModel::DocumentViewer => webkit2gtk::CacheModel::DocumentViewer,
                    CacheModel::DocumentBrowser => webkit2gtk::CacheModel::DocumentBrowser,
                    CacheModel::WebBrowser => webkit2gtk::CacheModel::WebBrowser,
                });
            }
        });
        if let Err(e) = r {
            tracing::warn!("could not reach the webview to tune it: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (window, accel, cache);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_yield_to_the_user_and_to_the_off_switch() {
        let all = env_to_set(true, |_| false);
        assert!(all.contains(&("WEBKIT_DISABLE_DMABUF_RENDERER", "1")));
        // Set by the user (to anything, 0 included): left alone.
        assert!(env_to_set(true, |k| k == "WEBKIT_DISABLE_DMABUF_RENDERER").is_empty());
        assert!(env_to_set(false, |_| false).is_empty());
        assert!(defaults_on_from(None));
        assert!(defaults_on_from(Some("1")));
        assert!(!defaults_on_from(Some("0")));
        assert!(!defaults_on_from(Some("off")));
    }

    #[test]
    fn webview_choice_defaults_overrides_and_bad_values() {
        assert_eq!(
            webview_choice(true, None, None),
            Ok((None, Some(CacheModel::DocumentViewer)))
        );
        assert_eq!(webview_choice(false, None, None), Ok((None, None)));
        assert_eq!(
            webview_choice(false, Some("never"), Some("web")),
            Ok((Some(Accel::Never), Some(CacheModel::WebBrowser)))
        );
        let e = webview_choice(true, Some("sometimes"), None).unwrap_err();
        assert!(e.contains("PAPO_WEBKIT_ACCEL"), "{e}");
        let e = webview_choice(true, None, Some("big")).unwrap_err();
        assert!(e.contains("PAPO_WEBKIT_CACHE"), "{e}");
    }
}
