/**
 * DOM helpers every dashboard script uses, spliced into each one's own scope: the scripts are separate inline
 * scripts (each hashed in the page's CSP), so they share source, not globals.
 */
export const DOM_HELPERS = `
  var SVG = 'http://www.w3.org/2000/svg';
  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, title) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (title) { var t = document.createElementNS(SVG, 'title'); t.textContent = title; e.appendChild(t); }
    return e;
  }
  function pct(x) { return x === null || x === undefined ? '\\u2013' : (x * 100).toFixed(1) + ' %'; }
  function time(t) { return new Date(t).toLocaleTimeString(); }
  function get(path) {
    return fetch(path, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
      return r.json();
    });
  }
`;
