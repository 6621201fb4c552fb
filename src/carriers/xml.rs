//! The little XML the carriers' SOAP and XML services need: text
//! escaped on the way out, an element's text read back on the way in.

/// XML text: `&`, `<`, `>`, quotes escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The text of the first element named `name` (any namespace prefix) in
/// `xml`, unescaped.
pub fn element(xml: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = xml[from..].find('<').map(|i| i + from) {
        let end = xml[i..].find('>').map(|e| e + i)?;
        let tag = &xml[i + 1..end];
        let local = tag.split_whitespace().next().unwrap_or("");
        let local = local.rsplit(':').next().unwrap_or(local);
        if local == name && !tag.starts_with('/') && !tag.ends_with('/') {
            let close = xml[end..].find("</").map(|c| c + end)?;
            let text = &xml[end + 1..close];
            return Some(
                text.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&"),
            );
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_escaped_and_read_back_in_any_namespace() {
        let xml = format!(
            "<s:Envelope><s:Body><ns2:Respuesta><ns2:Resultado>0</ns2:Resultado>\
             <Nombre>{}</Nombre><Vacio/></ns2:Respuesta></s:Body></s:Envelope>",
            escape("Pérez & <Hijos>")
        );
        assert_eq!(element(&xml, "Resultado").as_deref(), Some("0"));
        assert_eq!(element(&xml, "Nombre").as_deref(), Some("Pérez & <Hijos>"));
        assert_eq!(element(&xml, "Vacio"), None);
        assert_eq!(element(&xml, "Nada"), None);
    }
}
