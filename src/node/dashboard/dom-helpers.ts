/**
 * DOM and request helpers every dashboard script uses, spliced into each one's own scope: the scripts are separate
 * inline scripts (each hashed in the page's CSP), so they share source, not globals. What they share at run time,
 * the operator token, lives in the tab's sessionStorage and the page's one token field (page.ts).
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
  var TOKEN_KEY = 'sgmoe-operator-token';
  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  // Every request of the page: it carries the operator token when one is kept, and a refusal (401) forgets that
  // token and asks for one in the page's token field. A token typed meanwhile is kept: the next request tries it.
  // That a typed token was refused is kept on the field (the page's scripts poll apart, and any of them may be the
  // one its token reached), so every refusal says so until another token is typed.
  function request(path, init) {
    var sent = storedToken();
    var options = Object.assign({ cache: 'no-store' }, init);
    if (sent) options.headers = Object.assign({}, options.headers, { authorization: 'Bearer ' + sent });
    return fetch(path, options).then(function (r) {
      if (r.status !== 401) return r;
      var field = $('token-field');
      if (storedToken() === sent) {
        try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
        if (sent) field.dataset.refused = 'yes';
        if (field.hidden) { field.hidden = false; $('token').focus(); }
      }
      var refused = new Error(field.dataset.refused ? 'the operator token was refused: enter it again' : 'enter the operator token');
      refused.unauthorised = true;
      throw refused;
    });
  }
  function get(path) {
    return request(path).then(function (r) {
      if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
      return r.json();
    });
  }
`;
