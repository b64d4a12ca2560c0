//! Plain aligned text tables for the terminal (`clorch validate`, `clorch status`); the
//! comparison tables have their own renderers in `report`.

/// Rows as left-aligned columns separated by two spaces, one line each, without trailing
/// spaces. Widths count characters, so labels with non-ASCII text stay aligned.
pub fn align(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        if widths.len() < row.len() {
            widths.resize(row.len(), 0);
        }
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, &width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_and_lines_end_without_spaces() {
        let rows = vec![
            vec!["id".to_string(), "method".into(), "seed".into()],
            vec!["3f9a".into(), "shrink_perturb".into(), "0".into()],
        ];
        assert_eq!(super::align(&rows), "id    method          seed\n3f9a  shrink_perturb  0\n");
    }
}
