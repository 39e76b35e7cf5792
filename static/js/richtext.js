/*
 * Message text as a small Markdown subset: **bold**, *italic*, `code`, fenced code blocks,
 * > quotes, and clickable http(s) links. The stored text stays what the user typed; this
 * only decides how a browser shows it.
 *
 * markdown-it (npm, served from node_modules) parses the text with raw HTML and entities off;
 * its tokens are then built into DOM nodes here with createElement and text nodes. Nothing
 * of the user's text ever goes through innerHTML, so markup outside the subset (headings,
 * lists, tags, entities) shows as the characters typed. A link gets an href only for http,
 * https or mailto, and opens in a new tab with rel="noopener noreferrer nofollow".
 *
 * Exposes window.chatRichText.render(text) -> DocumentFragment. Without markdown-it (the
 * script did not load) it returns the plain text.
 */
(function () {
  'use strict';

  var SAFE_HREF = /^(https?:|mailto:)/i;
  var ELEMENTS = {
    paragraph_open: 'p',
    blockquote_open: 'blockquote',
    strong_open: 'strong',
    em_open: 'em',
    link_open: 'a'
  };

  var parser = null;
  if (typeof window.markdownit === 'function') {
    parser = window.markdownit('zero', { html: false, linkify: true });
    parser.enable(['blockquote', 'fence', 'emphasis', 'backticks', 'newline', 'escape', 'linkify']);
  }

  function text(value) {
    return document.createTextNode(value);
  }

  function element(tag, content) {
    var node = document.createElement(tag);
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function opening(token) {
    var tag = ELEMENTS[token.type] || 'span';
    if (tag !== 'a') return element(tag);
    var href = token.attrGet('href') || '';
    if (!SAFE_HREF.test(href)) return element('span');
    var link = element('a');
    link.href = href;
    link.target = '_blank';
    link.rel = 'noopener noreferrer nofollow';
    return link;
  }

  function leaf(token) {
    switch (token.type) {
      case 'text':
        return text(token.content);
      case 'code_inline':
        return element('code', token.content);
      case 'fence': {
        var pre = element('pre');
        pre.appendChild(element('code', token.content.replace(/\n$/, '')));
        return pre;
      }
      case 'softbreak':
      case 'hardbreak':
        return text('\n');
      default:
        return token.content ? text(token.content) : null;
    }
  }

  // Tokens come as a flat list with nesting +1 (open) / -1 (close) / 0 (leaf); `inline`
  // tokens carry their own children.
  function build(tokens, parent) {
    var stack = [parent];
    tokens.forEach(function (token) {
      var top = stack[stack.length - 1];
      if (token.type === 'inline') {
        build(token.children || [], top);
      } else if (token.nesting === 1) {
        var node = opening(token);
        top.appendChild(node);
        stack.push(node);
      } else if (token.nesting === -1) {
        if (stack.length > 1) stack.pop();
      } else {
        var made = leaf(token);
        if (made) top.appendChild(made);
      }
    });
  }

  function render(value) {
    var source = value === undefined || value === null ? '' : String(value);
    var fragment = document.createDocumentFragment();
    if (!parser) {
      fragment.appendChild(text(source));
      return fragment;
    }
    try {
      build(parser.parse(source, {}), fragment);
    } catch (e) {  // never lose a message to a rendering problem
      fragment = document.createDocumentFragment();
      fragment.appendChild(text(source));
    }
    return fragment;
  }

  window.chatRichText = { render: render };
})();
