/**
 * Light and dark themes: CSS variables keyed on `<html data-theme>`, the choice remembered in
 * localStorage, the first default taken from the system's prefers-color-scheme.
 */
export type Theme = 'light' | 'dark';

const KEY = 'blocklab.theme';
const listeners = new Set<(t: Theme) => void>();

function stored(): Theme | null {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : null;
  } catch {
    return null;
  }
}

export function currentTheme(): Theme {
  const t = document.documentElement.dataset.theme;
  return t === 'dark' || t === 'light' ? t : initialTheme();
}

export function initialTheme(): Theme {
  return stored() ?? (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

/** Applies a theme (and remembers it when `remember`, i.e. the person chose it). */
export function applyTheme(theme: Theme, remember = false): void {
  document.documentElement.dataset.theme = theme;
  document.documentElement.style.colorScheme = theme;
  if (remember) {
    try {
      localStorage.setItem(KEY, theme);
    } catch {
      // storage disabled: the choice lasts for this page only
    }
  }
  for (const l of listeners) l(theme);
}

/** Calls `listener` on every theme change; returns the unsubscribe. */
export function onThemeChange(listener: (t: Theme) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
