// watercooler page, the messages: what each room followed has said (at
// most 500 a room), in publish-time order, and the one shown on the page,
// newest first. Each id is shown once however often it comes (a replay
// after a reconnect or a hand-over, the recent messages fetched, the
// backlog). What was said before this tab followed the room is earlier
// conversation; what comes after, in a room not shown, is unread.
//
// Watercooler.Messages(list, {node, onUnread(room)}); main.js feeds it.
'use strict';

(function () {
  var W = window.Watercooler = window.Watercooler || {};

  // Per room; beyond it the oldest messages go.
  var MAX_ITEMS = 500;

  function nowMicros() {
    return Date.now() * 1000;
  }

  // ids: "ROOM/TAG.SEQ-TAG.SEQ…", the first entry is the origin; SEQ is the
  // publish time in microseconds since the epoch, in base 36.
  function parseId(id) {
    var text = String(id || '');
    var slash = text.indexOf('/');
    var first = text.slice(slash + 1).split('-')[0];
    var dot = first.indexOf('.');
    if (dot < 0) return null;
    var tag = first.slice(0, dot);
    var micros = parseInt(first.slice(dot + 1), 36);
    if (!/^[0-9a-f]{8}$/.test(tag) || !isFinite(micros)) return null;
    return { room: slash > 0 ? text.slice(0, slash) : W.LOBBY, tag: tag, micros: micros };
  }

  function hueOf(tag) {
    return parseInt(tag, 16) % 360;
  }

  W.hueOf = hueOf;

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

  W.Messages = function (list, opts) {
    var node = opts.node;
    var onUnread = opts.onUnread;
    // Per room followed: its items (oldest first), ids shown, unread
    // count, since when this tab follows it (µs), whether its recent
    // messages were fetched.
    var stores = Object.create(null);
    var current = '';
    // Origin tag (8 hex digits) -> node name. Kept when a node leaves, so
    // its old messages still say where they came from.
    var tags = Object.create(null);
    // The page came with its room's recent messages, rendered by the node
    // so they show without JavaScript: taken in (as earlier conversation)
    // when that room is first shown, so no stream repeats them.
    var rendered = Array.prototype.map.call(list.querySelectorAll('li[data-id]'), function (li) {
      var p = li.querySelector('.text');
      return { id: li.dataset.id, text: p ? p.textContent : '' };
    });

    function originElement(tag) {
      var o = document.createElement('span');
      o.className = 'origin';
      if (tag) {
        o.dataset.tag = tag;
        o.style.setProperty('--h', hueOf(tag));
        o.textContent = tags[tag] || tag;
        if (tags[tag] === node) o.classList.add('self');
      } else {
        o.textContent = 'unknown node';
      }
      return o;
    }

    function storeOf(room) {
      if (!stores[room]) {
        stores[room] = { items: [], ids: Object.create(null), unread: 0, since: nowMicros(), loaded: false };
      }
      return stores[room];
    }

    function itemElement(item) {
      var li = document.createElement('li');
      li.className = item.notice ? 'notice' : 'msg';
      if (item.earlier) li.classList.add('earlier');
      if (item.id) li.dataset.id = item.id;
      var meta = document.createElement('div');
      meta.className = 'meta';
      if (!item.notice) meta.appendChild(originElement(item.tag));
      meta.appendChild(timeElement(new Date(item.micros / 1000)));
      var p = document.createElement('p');
      p.className = 'text';
      p.textContent = item.text;
      li.appendChild(meta);
      li.appendChild(p);
      return li;
    }

    // Keeps a room's items in publish-time order (arrival order among
    // equals); on the page, the newest is at the top.
    function insert(room, item) {
      var s = stores[room];
      var items = s.items;
      var i = items.length;
      while (i > 0 && items[i - 1].micros > item.micros) i--;
      items.splice(i, 0, item);
      if (room === current) {
        item.li = itemElement(item);
        if (!item.earlier) item.li.classList.add('arrive');
        var newer = items[i + 1];
        list.insertBefore(item.li, newer ? newer.li.nextSibling : list.firstChild);
      }
      while (items.length > MAX_ITEMS) {
        var old = items.shift();
        if (old.id) delete s.ids[old.id];
        if (old.li && old.li.parentNode === list) list.removeChild(old.li);
      }
    }

    // `earlier`: backlog or fetched, the conversation so far, never unread.
    function add(id, text, earlier) {
      var parsed = parseId(id);
      if (!parsed) return;
      var s = stores[parsed.room];
      if (!s) return; // a room another tab follows
      var seen = s.ids[id];
      if (seen) {
        // Shown as earlier, then it came live: it is new after all.
        if (!earlier && seen.earlier && seen.micros >= s.since) {
          seen.earlier = false;
          if (seen.li) seen.li.classList.remove('earlier');
        }
        return;
      }
      var item = {
        id: id, text: text, tag: parsed.tag, micros: parsed.micros,
        earlier: earlier || parsed.micros < s.since
      };
      s.ids[id] = item;
      insert(parsed.room, item);
      if (!item.earlier && parsed.room !== current) {
        s.unread++;
        onUnread(parsed.room);
      }
    }

    function notice(text) {
      insert(current, { notice: true, text: text, micros: nowMicros(), earlier: false });
    }

    function show(room) {
      current = room;
      var s = storeOf(room);
      s.unread = 0;
      rendered.splice(0).forEach(function (m) { add(m.id, m.text, true); });
      // A room shown is not news: screen readers announce arrivals only.
      list.removeAttribute('aria-live');
      setTimeout(function () { list.setAttribute('aria-live', 'polite'); }, 0);
      list.textContent = '';
      var frag = document.createDocumentFragment();
      for (var i = s.items.length - 1; i >= 0; i--) {
        var item = s.items[i];
        if (!item.li) item.li = itemElement(item);
        item.li.classList.remove('arrive');
        frag.appendChild(item.li);
      }
      list.appendChild(frag);
      relabelOrigins();
      load(room);
    }

    // Names learnt late fill in the messages that so far showed a bare tag.
    function relabelOrigins() {
      var spans = list.querySelectorAll('.origin[data-tag]');
      for (var i = 0; i < spans.length; i++) {
        var tag = spans[i].dataset.tag;
        if (tags[tag] && spans[i].textContent !== tags[tag]) {
          spans[i].textContent = tags[tag];
          spans[i].classList.toggle('self', tags[tag] === node);
        }
      }
    }

    // The room's recent messages, for a room this tab has not shown yet (the
    // stream only brings what comes next, or a backlog when it is new).
    function load(room) {
      var s = stores[room];
      if (!s || s.loaded) return;
      s.loaded = true;
      fetch('/r/' + room + '/messages', { cache: 'no-store' }).then(function (res) {
        return res.ok ? res.json() : null;
      }).then(function (body) {
        if (!body || !Array.isArray(body.messages) || stores[room] !== s) return;
        body.messages.forEach(function (m) {
          if (m && typeof m.id === 'string' && typeof m.text === 'string' &&
              m.id.indexOf(room + '/') === 0) {
            add(m.id, m.text, true);
          }
        });
      }, function () {
        s.loaded = false;
      });
    }

    return {
      follow: storeOf,
      unfollow: function (room) { delete stores[room]; },
      follows: function (room) { return !!stores[room]; },
      rooms: function () { return Object.keys(stores); },
      show: show,
      add: add,
      notice: notice,
      unread: function (room) { return stores[room] ? stores[room].unread : 0; },
      totalUnread: function () {
        return Object.keys(stores).reduce(function (n, r) { return n + stores[r].unread; }, 0);
      },
      // Names learnt (tag -> node name); returns whether any was new.
      learn: function (more) {
        var changed = false;
        Object.keys(more).forEach(function (tag) {
          if (tags[tag] !== more[tag]) changed = true;
          tags[tag] = more[tag];
        });
        if (changed) relabelOrigins();
        return changed;
      },
      nameOf: function (tag) { return tags[tag]; },
      tags: function () { return tags; }
    };
  };
})();
