// watercooler page script: the page's state, presence, the rooms of the
// cluster, publishing without leaving the page, and moving between rooms
// without a reload (the URL says the room). rooms.js keeps the rooms
// followed and draws the rooms panel, messages.js shows what each room
// said, stream.js brings the events (one stream shared by all the tabs);
// this file ties them together. Text from the network is only ever set
// with textContent, never parsed as HTML. No external resources: the files
// of public/ are all (templates/home.html loads them in that order).
'use strict';

(function () {
  var W = window.Watercooler;
  if (!W || !W.Stream || !W.Follows || !W.Messages) return;

  var MISSED_SHOWN_MS = 15000;
  // How stale the room list from GET /rooms may get while presence moves.
  var ROOMS_REFRESH_MS = 15000;

  var form = document.getElementById('publish');
  var input = document.getElementById('message');
  var list = document.getElementById('messages');
  var stateEl = document.getElementById('state');
  var clusterEl = document.getElementById('cluster');
  var nodesEl = document.getElementById('nodes');
  var listenersEl = document.getElementById('listeners');
  var listenersLabel = document.getElementById('listeners-label');
  var errorEl = document.getElementById('error');
  var roomTitle = document.getElementById('room-title');
  var roomPresence = document.getElementById('room-presence');
  var roomListeners = document.getElementById('room-listeners');
  var leaveButton = document.getElementById('leave');
  var nav = document.getElementById('rooms');
  var discover = document.getElementById('discover');
  var joinForm = document.getElementById('join');
  var joinInput = document.getElementById('room-name');
  var joinError = document.getElementById('join-error');
  var roomEls = {
    followed: document.getElementById('followed'),
    others: document.getElementById('others'),
    othersEmpty: document.getElementById('others-empty'),
    othersMore: document.getElementById('others-more')
  };

  var node = document.body.dataset.node || '';
  var current = W.roomFromPath(location.pathname) || document.body.dataset.room || W.LOBBY;
  var messages = W.Messages(list, {
    node: node,
    // A message in a room not shown: its count and the title change.
    onUnread: function () {
      renderRooms();
      updateTitle();
    }
  });
  // Listeners per room across the cluster: from presence (the busiest 16)
  // and from GET /rooms (also rooms with messages and no listener).
  var presenceRooms = null;
  var listedRooms = Object.create(null);
  var roomsFetchedAt = 0;
  var missedUntil = 0;
  var stream = null;
  // The room of the URL while the node is asked whether it may be opened:
  // not streamed until then.
  var probing = '';
  var streamInfo = { state: 'connecting', covered: [], refused: '', role: '' };

  var LABELS = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    disconnected: 'offline, retrying…',
    unsupported: 'this browser cannot receive live messages'
  };

  // ---- state

  function showState() {
    var state = streamInfo.state;
    var label = LABELS[state] || state;
    if (state === 'live' && streamInfo.covered.indexOf(current) < 0) {
      state = 'connecting';
      label = 'joining #' + current + '…';
    } else if (state === 'live' && Date.now() < missedUntil) {
      label = 'live · some messages were missed';
    }
    if (state === 'unsupported') state = 'disconnected';
    document.body.dataset.state = state;
    document.body.dataset.stream = streamInfo.role;
    stateEl.textContent = label;
    stateEl.parentNode.title = streamInfo.refused ? 'The node refused the stream ' + streamInfo.refused : '';
    clusterEl.classList.toggle('stale', state !== 'live');
  }

  function showError(text) {
    errorEl.textContent = text;
    input.setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  function showJoinError(text) {
    joinError.textContent = text;
    joinInput.setAttribute('aria-invalid', text ? 'true' : 'false');
    if (text) discover.open = true;
  }

  // ---- presence and the rooms of the cluster

  function listenersOf(room) {
    if (presenceRooms && room in presenceRooms) return presenceRooms[room];
    // Presence names the busiest 16 rooms that have listeners.
    if (presenceRooms && Object.keys(presenceRooms).length < 16) return 0;
    return room in listedRooms ? listedRooms[room].listeners : null;
  }

  function followedRooms() {
    var list = follows.list();
    if (list.indexOf(current) < 0) list.push(current);
    return list;
  }

  function renderRooms() {
    var followed = followedRooms();
    var names = Object.keys(listedRooms);
    if (presenceRooms) names = names.concat(Object.keys(presenceRooms));
    var others = [];
    names.forEach(function (name) {
      if (followed.indexOf(name) >= 0 || !W.validRoom(name)) return;
      if (others.some(function (o) { return o.name === name; })) return;
      others.push({ name: name, listeners: listenersOf(name), messages: (listedRooms[name] || {}).messages || 0 });
    });
    others.sort(function (a, b) {
      return (b.listeners || 0) - (a.listeners || 0) || b.messages - a.messages ||
        (a.name < b.name ? -1 : 1);
    });
    W.renderRooms(roomEls, {
      current: current,
      followed: followed.map(function (name) {
        return { name: name, listeners: listenersOf(name), unread: messages.unread(name) };
      }),
      others: others
    });
    var n = listenersOf(current);
    roomPresence.hidden = n === null;
    roomListeners.textContent = n === null ? '–' : String(n);
    roomPresence.dataset.room = current;
  }

  function refreshRooms() {
    roomsFetchedAt = Date.now();
    fetch('/rooms', { cache: 'no-store' }).then(function (res) {
      return res.ok ? res.json() : null;
    }).then(function (body) {
      if (!body || !Array.isArray(body.rooms)) return;
      listedRooms = Object.create(null);
      body.rooms.forEach(function (r) {
        if (r && typeof r.name === 'string' && W.validRoom(r.name)) {
          listedRooms[r.name] = { listeners: Number(r.listeners) || 0, messages: Number(r.messages) || 0 };
        }
      });
      renderRooms();
    }, function () {});
  }

  function renderPresence(p) {
    var nodes = Array.isArray(p.nodes) ? p.nodes.map(String) : [];
    var self = typeof p.node === 'string' ? p.node : nodes[0];
    if (p.tags && typeof p.tags === 'object') {
      var learnt = Object.create(null);
      Object.keys(p.tags).forEach(function (tag) { learnt[tag] = String(p.tags[tag]); });
      messages.learn(learnt);
    }
    var tags = messages.tags();
    var byName = Object.create(null);
    Object.keys(tags).forEach(function (tag) { byName[tags[tag]] = tag; });

    nodesEl.textContent = '';
    nodes.forEach(function (name) {
      var li = document.createElement('li');
      li.dataset.node = name;
      if (byName[name]) li.style.setProperty('--h', W.hueOf(byName[name]));
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

    if (p.rooms && typeof p.rooms === 'object') {
      presenceRooms = Object.create(null);
      Object.keys(p.rooms).forEach(function (name) {
        if (W.validRoom(name) && typeof p.rooms[name] === 'number') presenceRooms[name] = p.rooms[name];
      });
    }
    if (Date.now() - roomsFetchedAt > ROOMS_REFRESH_MS) refreshRooms();
    renderRooms();
  }

  function onEvent(type, id, data) {
    if (type === 'message' || type === 'backlog') {
      messages.add(id, data, type === 'backlog');
    } else if (type === 'presence') {
      try {
        renderPresence(JSON.parse(data));
      } catch (e) {
        // A malformed presence update is ignored; the next one will do.
      }
    } else if (type === 'missed') {
      missedUntil = Date.now() + MISSED_SHOWN_MS;
      var why = String(data || 'some messages were missed');
      messages.notice(why.charAt(0).toUpperCase() + why.slice(1) + (/[.!]$/.test(why) ? '' : '.'));
      showState();
      setTimeout(showState, MISSED_SHOWN_MS + 50);
    }
  }

  // ---- rooms: switching, joining, leaving

  function updateTitle() {
    var unread = messages.totalUnread();
    document.title = (unread ? '(' + unread + ') ' : '') + '#' + current + ' · watercooler · ' + node;
  }

  // Shows `room` (followed already). `how`: 'push' a history entry,
  // 'replace' it, or nothing (popstate: the URL is already there).
  function showRoom(room, how) {
    current = room;
    var path = W.roomPath(room);
    if (how === 'push' && location.pathname !== path) history.pushState({ room: room }, '', path);
    if (how === 'replace') history.replaceState({ room: room }, '', path);
    document.body.dataset.room = room;
    form.setAttribute('action', W.publishPath(room));
    roomTitle.textContent = '#' + room;
    list.setAttribute('aria-label', 'Messages in #' + room + ', newest first');
    input.placeholder = room === W.LOBBY ? 'Say something to the cluster' : 'Say something in #' + room;
    leaveButton.hidden = room === W.LOBBY;
    leaveButton.setAttribute('aria-label', 'Stop following #' + room);
    showError('');
    messages.show(room);
    renderRooms();
    updateTitle();
    showState();
    if (stream) stream.roomsChanged();
  }

  // Asks the node to open the room (a stream on it, closed at once): a
  // node at its --max-rooms refuses, and then the room is not followed, so
  // the shared stream is never refused for it.
  function probe(room) {
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    return fetch('/r/' + room + '/listen', { cache: 'no-store', signal: ctl ? ctl.signal : undefined })
      .then(function (res) {
        if (res.ok) {
          if (ctl) ctl.abort();
          return '';
        }
        return res.text().then(function (body) {
          return (body.trim() || res.statusText) + ' (' + res.status + ')';
        });
      }, function () {
        return 'the node cannot be reached';
      });
  }

  // Follows `room` if it can be opened, then shows it.
  function join(room, how) {
    if (follows.has(room)) {
      showRoom(room, how);
      return Promise.resolve(true);
    }
    if (follows.full()) {
      showJoinError('You follow ' + W.MAX_FOLLOWED + ' rooms, the most one stream carries: stop following one first.');
      return Promise.resolve(false);
    }
    joinForm.setAttribute('aria-busy', 'true');
    probing = room;
    return probe(room).then(function (why) {
      joinForm.removeAttribute('aria-busy');
      probing = '';
      if (why) {
        showJoinError('Cannot open #' + room + ': ' + why);
        return false;
      }
      showJoinError('');
      follows.add(room);
      messages.follow(room);
      showRoom(room, how);
      refreshRooms();
      return true;
    });
  }

  function leave(room) {
    if (room === W.LOBBY) return;
    follows.remove(room);
    if (current === room) showRoom(W.LOBBY, 'push');
    else renderRooms();
    messages.unfollow(room);
    updateTitle();
    if (stream) stream.roomsChanged();
  }

  // Another tab joined or left a room: follow the same ones here.
  function onFollowsChanged() {
    var followed = followedRooms();
    messages.rooms().forEach(function (r) {
      if (followed.indexOf(r) < 0) messages.unfollow(r);
    });
    followed.forEach(messages.follow);
    renderRooms();
    updateTitle();
    if (stream) stream.roomsChanged();
  }

  var follows = W.Follows(onFollowsChanged);

  nav.addEventListener('click', function (event) {
    var a = event.target.closest && event.target.closest('a[data-room]');
    if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    join(a.dataset.room, 'push');
  });

  joinForm.addEventListener('submit', function (event) {
    event.preventDefault();
    var parsed = W.parseRoomName(joinInput.value);
    if (parsed.error) {
      showJoinError(parsed.error);
      joinInput.focus();
      return;
    }
    join(parsed.name, 'push').then(function (ok) {
      if (ok) {
        joinInput.value = '';
        input.focus();
      } else {
        joinInput.focus();
      }
    });
  });

  joinInput.addEventListener('input', function () {
    if (joinError.textContent) showJoinError('');
  });

  leaveButton.addEventListener('click', function () {
    leave(current);
    input.focus();
  });

  window.addEventListener('popstate', function () {
    var room = W.roomFromPath(location.pathname) || W.LOBBY;
    if (room !== current) {
      join(room, '').then(function (ok) {
        if (!ok) showRoom(W.LOBBY, 'replace');
      });
    }
  });

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

  // ---- start: the room of the URL (followed once the node agrees), the
  // rooms panel, the stream.
  nav.hidden = false;
  // The join form and the cluster's rooms: open beside the chat, folded
  // above it on a phone.
  var wide = window.matchMedia('(min-width: 721px)');
  discover.open = wide.matches;
  if (wide.addEventListener) {
    wide.addEventListener('change', function () { discover.open = wide.matches; });
  }
  follows.list().forEach(messages.follow);
  var first = current;
  current = W.LOBBY;
  showRoom(W.LOBBY, first === W.LOBBY && location.pathname !== '/' ? 'replace' : '');
  if (first !== W.LOBBY) {
    if (follows.has(first)) {
      showRoom(first, '');
    } else {
      // Shown at once; followed (and streamed) once the node agrees.
      showRoom(first, '');
      join(first, '').then(function (ok) {
        if (ok) return;
        messages.unfollow(first);
        showRoom(W.LOBBY, 'replace');
      });
    }
  }
  refreshRooms();
  stream = W.Stream({
    // The room shown first (never the one cut at the limit), even if
    // another tab stopped following it meanwhile.
    rooms: function () {
      var rooms = follows.list().filter(function (r) { return r !== current; });
      return current === probing ? rooms : [current].concat(rooms);
    },
    onEvent: onEvent,
    onState: function (info) {
      if (info.refused && info.refused !== streamInfo.refused) {
        showError('Not receiving: the node refused the stream ' + info.refused);
      }
      streamInfo = info;
      showState();
    }
  });
})();
