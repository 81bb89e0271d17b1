// watercooler page, the rooms: names and paths, the rooms a person follows
// (kept in localStorage, so every tab of the browser and the next visit
// share them), and the rooms panel: followed rooms with their unread and
// listener counts, the cluster's other rooms, the join form. It draws and
// validates; main.js decides what joining or switching does.
'use strict';

(function () {
  var W = window.Watercooler = window.Watercooler || {};

  var LOBBY = 'lobby';
  var KEY = 'watercooler.rooms';
  // One stream follows at most 16 rooms (the node's limit).
  var MAX_FOLLOWED = 16;
  var NAME = /^[a-z0-9-]{1,32}$/;
  // Rooms of the cluster listed in the panel.
  var MAX_LISTED = 12;
  var SVG = 'http://www.w3.org/2000/svg';

  W.LOBBY = LOBBY;
  W.MAX_FOLLOWED = MAX_FOLLOWED;

  W.validRoom = function (name) {
    return NAME.test(name);
  };

  W.roomPath = function (name) {
    return name === LOBBY ? '/' : '/r/' + name;
  };

  W.publishPath = function (name) {
    return name === LOBBY ? '/publish' : '/r/' + name + '/publish';
  };

  // The room a page path names (`/`, `/r/NAME`), or null.
  W.roomFromPath = function (path) {
    if (path === '/' || path === '') return LOBBY;
    var m = /^\/r\/([^/]+)\/?$/.exec(path);
    return m && NAME.test(m[1]) ? m[1] : null;
  };

  // What a person typed, as a room name ({name}), or why it is not one
  // ({error}). "#Team News" is taken as "team-news".
  W.parseRoomName = function (text) {
    var name = String(text || '').trim().replace(/^#/, '').toLowerCase().replace(/\s+/g, '-');
    if (!name) return { error: 'Type the name of a room first.' };
    if (name.length > 32) return { error: 'Too long: a room name has at most 32 characters.' };
    if (!NAME.test(name)) {
      return { error: 'Not a room name: use only a–z, 0–9 and - (at most 32).' };
    }
    return { name: name };
  };

  // The rooms followed: the lobby first, then in the order joined.
  // `onChange` runs when another tab changed them.
  W.Follows = function (onChange) {
    var memory = [LOBBY];

    function clean(list) {
      var out = [LOBBY];
      (Array.isArray(list) ? list : []).forEach(function (r) {
        if (typeof r === 'string' && NAME.test(r) && out.indexOf(r) < 0 && out.length < MAX_FOLLOWED) out.push(r);
      });
      return out;
    }

    function read() {
      try {
        var raw = window.localStorage.getItem(KEY);
        if (raw !== null) memory = clean(JSON.parse(raw));
      } catch (e) {
        // No storage (disabled, or a bad value): this tab remembers alone.
      }
      return memory.slice();
    }

    function write(list) {
      memory = clean(list);
      try {
        window.localStorage.setItem(KEY, JSON.stringify(memory));
      } catch (e) {
        // As above.
      }
    }

    window.addEventListener('storage', function (event) {
      if (event.key === KEY || event.key === null) onChange();
    });

    return {
      list: read,
      has: function (name) { return read().indexOf(name) >= 0; },
      full: function () { return read().length >= MAX_FOLLOWED; },
      add: function (name) {
        var list = read();
        if (list.indexOf(name) < 0) list.push(name);
        write(list);
      },
      remove: function (name) {
        write(read().filter(function (r) { return r !== name; }));
      }
    };
  };

  function personIcon() {
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('class', 'icon');
    var path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', 'M8 8a3 3 0 1 0 0-6 3 3 0 0 0 0 6zm-5.5 6.5c0-3 2.5-4.5 5.5-4.5s5.5 1.5 5.5 4.5z');
    svg.appendChild(path);
    return svg;
  }

  function hidden(text) {
    var s = document.createElement('span');
    s.className = 'vh';
    s.textContent = text;
    return s;
  }

  // One room's entry: a link to its page, its listeners, its unread count.
  // Entries are kept and updated by name, so a focused link keeps its focus.
  function entry(li, room, view) {
    var a = li.firstChild;
    if (!a) {
      a = document.createElement('a');
      a.dataset.room = room.name;
      a.href = W.roomPath(room.name);
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = '#' + room.name;
      var count = document.createElement('span');
      count.className = 'count';
      count.appendChild(personIcon());
      count.appendChild(document.createElement('span'));
      count.appendChild(hidden(' listening'));
      var unread = document.createElement('span');
      unread.className = 'unread';
      unread.appendChild(document.createElement('span'));
      unread.appendChild(hidden(' unread'));
      a.appendChild(name);
      a.appendChild(count);
      a.appendChild(unread);
      li.appendChild(a);
    }
    var countEl = a.children[1];
    var n = room.listeners;
    countEl.hidden = n === null || n === undefined;
    countEl.children[1].textContent = n === null || n === undefined ? '' : String(n);
    countEl.title = n === 1 ? '1 stream listening' : n + ' streams listening';
    var unreadEl = a.children[2];
    unreadEl.hidden = !room.unread;
    unreadEl.firstChild.textContent = room.unread > 99 ? '99+' : String(room.unread || 0);
    if (room.name === view.current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
    li.classList.toggle('has-unread', !!room.unread);
  }

  function renderList(ul, rooms, view) {
    var byName = Object.create(null);
    Array.prototype.forEach.call(ul.children, function (li) { byName[li.dataset.room] = li; });
    rooms.forEach(function (room, i) {
      var li = byName[room.name];
      delete byName[room.name];
      if (!li) {
        li = document.createElement('li');
        li.dataset.room = room.name;
      }
      entry(li, room, view);
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    });
    Object.keys(byName).forEach(function (name) { ul.removeChild(byName[name]); });
  }

  // view: {current, followed: [{name, listeners, unread}], others: [{name,
  // listeners}], busiest first}. The cluster may list 200 rooms: the panel
  // shows the busiest few; the others are joined by name.
  W.renderRooms = function (els, view) {
    renderList(els.followed, view.followed, view);
    renderList(els.others, view.others.slice(0, MAX_LISTED), view);
    var more = view.others.length - MAX_LISTED;
    els.othersEmpty.hidden = view.others.length > 0;
    els.othersMore.hidden = more <= 0;
    els.othersMore.textContent = more > 0 ? 'and ' + more + ' more: join one by its name.' : '';
  };
})();
