// toYAML renders a JSON value as YAML (block style; strings quoted when
// YAML would read them as something else). Enough to show resources.
export function toYAML(v, indent = '') {
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return v.map((x) => {
      const s = isScalar(x) ? scalar(x) : toYAML(x, indent + '  ').trimStart();
      return `${indent}- ${s}`;
    }).join('\n');
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) return '{}';
    return keys.map((k) => {
      const x = v[k];
      const key = scalar(k);
      if (isScalar(x) || (Array.isArray(x) && !x.length) || (typeof x === 'object' && x !== null && !Object.keys(x).length)) {
        return `${indent}${key}: ${isScalar(x) ? scalar(x) : (Array.isArray(x) ? '[]' : '{}')}`;
      }
      return `${indent}${key}:\n${toYAML(x, indent + '  ')}`;
    }).join('\n');
  }
  return indent + scalar(v);
}

function isScalar(x) { return x === null || typeof x !== 'object'; }

function scalar(x) {
  if (x === null) return 'null';
  if (typeof x !== 'string') return String(x);
  if (x === '' || /^[\s-?:,[\]{}#&*!|>'"%@`]|[:#]\s|\s$|^(true|false|null|yes|no|on|off|~)$/i.test(x) || /^[-+]?[\d.]/.test(x) || /[\n\t]/.test(x)) {
    return JSON.stringify(x);
  }
  return x;
}
