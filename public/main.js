// watercooler page script: publish without leaving the page, listen with SSE.
// Text from the network is only ever set with textContent, never parsed as
// HTML. No external resources: this file, main.css and favicon.svg are all.
'use strict';

(function () {
  var MAX_ITEMS = 500;
  var MISSED_SHOWN_MS = 15000;

  var form = document.getElementById('publish');
  var input = document.getElementById('message');
  var list = document.getElementById('messages');
  var stateEl = document.getElementById('state');
  var clusterEl = document.getElementById('cluster');
  var nodesEl = document.getElementById('nodes');
  var listenersEl = document.getElementById('listeners');
  var listenersLabel = document.getElementById('listeners-label');
  var errorEl = document.getElementById('error');

  // Origin tag (8 hex digits) -> node name. Kept when a node leaves, so
  // its old messages still say where they came from.
  var tags = Object.create(null);
  // Ids already shown: a replay after a reconnect never shows one twice.
  var seen = new Set();
  var missedUntil = 0;
  var state = 'connecting';

  var LABELS = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    disconnected: 'offline, retrying…'
  };

  function setState(next) {
    state = next;
    document.body.dataset.state = next;
    var label = LABELS[next] || next;
    if (next === 'live' && Date.now() < missedUntil) label = 'live · some messages were missed';
    stateEl.textContent = label;
    clusterEl.classList.toggle('stale', next !== 'live');
  }

  function showError(text) {
    errorEl.textContent = text;
    input.setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  // ---- ids: "ROOM/TAG.SEQ-TAG.SEQ…", the first entry is the origin; SEQ
  // is the publish time in microseconds since the epoch, in base 36.
  function parseId(id) {
    var text = String(id || '');
    var slash = text.indexOf('/');
    var first = text.slice(slash + 1).split('-')[0];
    var dot = first.indexOf('.');
    if (dot < 0) return null;
    var tag = first.slice(0, dot);
    var micros = parseInt(first.slice(dot + 1), 36);
    if (!/^[0-9a-f]{8}$/.test(tag) || !isFinite(micros)) return null;
    return { tag: tag, date: new Date(micros / 1000) };
  }

  function hueOf(tag) {
    return parseInt(tag, 16) % 360;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() &&
      a.getDate() === b.getDate();
  }

  function timeElement(date) {
    var t = document.createElement('time');
    t.dateTime = date.toISOString();
    t.title = date.toLocaleString();
    var clock = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    t.textContent = sameDay(date, new Date())
      ? clock
      : date.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + clock;
    return t;
  }

  function originElement(tag) {
    var o = document.createElement('span');
    o.className = 'origin';
    if (tag) {
      o.dataset.tag = tag;
      o.style.setProperty('--h', hueOf(tag));
      o.textContent = tags[tag] || tag;
      if (tags[tag] === document.body.dataset.node) o.classList.add('self');
    } else {
      o.textContent = 'unknown node';
    }
    return o;
  }

  // Newest first: put an item at the top, drop the oldest beyond the cap.
  function prepend(li) {
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_ITEMS) {
      var old = list.lastElementChild;
      if (old.dataset.id) seen.delete(old.dataset.id);
      list.removeChild(old);
    }
  }

  function addMessage(text, id) {
    if (id) {
      if (seen.has(id)) return;
      seen.add(id);
    }
    var parsed = parseId(id);
    var li = document.createElement('li');
    li.className = 'msg';
    if (id) li.dataset.id = id;
    var meta = document.createElement('div');
    meta.className = 'meta';
    meta.appendChild(originElement(parsed && parsed.tag));
    meta.appendChild(timeElement(parsed ? parsed.date : new Date()));
    var p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    li.appendChild(meta);
    li.appendChild(p);
    prepend(li);
  }

  function addNotice(text) {
    var li = document.createElement('li');
    li.className = 'notice';
    var meta = document.createElement('div');
    meta.className = 'meta';
    meta.appendChild(timeElement(new Date()));
    var p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    li.appendChild(meta);
    li.appendChild(p);
    prepend(li);
  }

  // Names learnt late fill in the messages that so far showed a bare tag.
  function relabelOrigins() {
    var spans = list.querySelectorAll('.origin[data-tag]');
    for (var i = 0; i < spans.length; i++) {
      var tag = spans[i].dataset.tag;
      if (tags[tag] && spans[i].textContent !== tags[tag]) {
        spans[i].textContent = tags[tag];
        spans[i].classList.toggle('self', tags[tag] === document.body.dataset.node);
      }
    }
  }

  function renderPresence(p) {
    var nodes = Array.isArray(p.nodes) ? p.nodes.map(String) : [];
    var self = typeof p.node === 'string' ? p.node : nodes[0];
    var newTag = false;
    if (p.tags && typeof p.tags === 'object') {
      Object.keys(p.tags).forEach(function (tag) {
        if (tags[tag] !== String(p.tags[tag])) newTag = true;
        tags[tag] = String(p.tags[tag]);
      });
    }
    var byName = Object.create(null);
    Object.keys(tags).forEach(function (tag) { byName[tags[tag]] = tag; });

    nodesEl.textContent = '';
    nodes.forEach(function (name) {
      var li = document.createElement('li');
      li.dataset.node = name;
      if (byName[name]) li.style.setProperty('--h', hueOf(byName[name]));
      li.textContent = name;
      if (name === self) {
        li.className = 'self';
        li.title = 'the node this page is connected to';
      }
      nodesEl.appendChild(li);
    });
    var listeners = typeof p.listeners === 'number' ? p.listeners : null;
    listenersEl.textContent = listeners === null ? '–' : String(listeners);
    listenersLabel.textContent = 'listening on ' + nodes.length + (nodes.length === 1 ? ' node' : ' nodes');
    clusterEl.dataset.listeners = listeners === null ? '' : String(listeners);
    if (newTag) relabelOrigins();
  }

  // ---- publishing: the form is intercepted so the page never reloads;
  // without JavaScript it still posts into the hidden iframe.
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var message = input.value;
    if (message.trim() === '') {
      showError('Not sent: type a message first.');
      input.focus();
      return;
    }
    showError('');
    form.setAttribute('aria-busy', 'true');
    fetch(form.getAttribute('action') || '/publish', {
      method: 'POST',
      body: new URLSearchParams({ message: message }),
      redirect: 'manual',
      credentials: 'same-origin'
    }).then(function (res) {
      if (res.type === 'opaqueredirect' || res.status === 303 || res.ok) {
        // Only clear if nothing new was typed meanwhile.
        if (input.value === message) input.value = '';
        return null;
      }
      return res.text().then(function (body) {
        var reason = body.trim() || (res.status === 413 ? 'the message is too long'
          : res.status === 400 ? 'the message is empty or invalid' : 'refused');
        showError('Not sent (' + res.status + '): ' + reason);
      });
    }, function () {
      showError('Not sent: the node cannot be reached.');
    }).then(function () {
      form.removeAttribute('aria-busy');
      input.focus();
    });
  });

  input.addEventListener('input', function () {
    if (errorEl.textContent) showError('');
  });

  // ---- listening. The browser reconnects by itself and sends
  // Last-Event-ID, so the node replays what was missed. Only if the stream
  // is closed for good (an HTTP error) is a new one opened, with the last
  // id in the query string.
  if (!('EventSource' in window)) {
    setState('disconnected');
    stateEl.textContent = 'this browser cannot receive live messages';
    return;
  }

  var lastId = '';
  var retryDelay = 1000;

  function connect() {
    var room = document.body.dataset.room || 'lobby';
    var base = room === 'lobby' ? '/listen' : '/r/' + room + '/listen';
    var url = lastId ? base + '?lastEventId=' + encodeURIComponent(lastId) : base;
    var source = new EventSource(url);

    source.addEventListener('open', function () {
      retryDelay = 1000;
      setState('live');
    });

    source.addEventListener('error', function () {
      if (source.readyState === EventSource.CLOSED) {
        setState('disconnected');
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      } else {
        setState('reconnecting');
      }
    });

    source.addEventListener('message', function (event) {
      if (event.lastEventId) lastId = event.lastEventId;
      addMessage(event.data, event.lastEventId);
    });

    source.addEventListener('missed', function (event) {
      missedUntil = Date.now() + MISSED_SHOWN_MS;
      var why = String(event.data || 'some messages were missed');
      addNotice(why.charAt(0).toUpperCase() + why.slice(1) + (/[.!]$/.test(why) ? '' : '.'));
      setState(state);
      setTimeout(function () { setState(state); }, MISSED_SHOWN_MS + 50);
    });

    source.addEventListener('presence', function (event) {
      try {
        renderPresence(JSON.parse(event.data));
      } catch (e) {
        // A malformed presence update is ignored; the next one will do.
      }
    });
  }

  connect();
})();
