//! The page, embedded in the binary: no CDN, no files next to the executable, works offline.

/// `(content type, bytes)` of the asset named `name`.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "index.html" => ("text/html; charset=utf-8", include_bytes!("assets/index.html")),
        "app.js" => ("text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
        "style.css" => ("text/css; charset=utf-8", include_bytes!("assets/style.css")),
        _ => return None,
    })
}
