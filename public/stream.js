// watercooler page, the stream: one EventSource for all the tabs of this
// browser on this origin (issue 12). Over plain http a browser keeps six
// connections per host, so ten tabs with a stream each would starve; here
// one tab, elected with Web Locks, holds the stream for the union of the
// rooms every tab follows and relays each event to the others over a
// BroadcastChannel. When it closes, the next tab in the lock's queue takes
// over and reconnects with the last id seen (every tab tracks it), so
// nothing is lost; main.js drops repeats by id. Without BroadcastChannel or
// navigator.locks (old browsers, pages that are not a secure context), each
// tab holds its own stream. Publishing is not here: each tab posts itself.
//
// Watercooler.Stream(options) starts it; options.rooms() lists the rooms
// this tab follows (its current room first), options.onEvent(type, id, data)
// gets every event (message, backlog, presence, missed) and
// options.onState(info) the stream's state: {state: connecting | live |
// reconnecting | disconnected, covered: rooms the open stream follows,
// refused: why the node refused it, role: holder | relay | own}.
'use strict';

(function () {
  var W = window.Watercooler = window.Watercooler || {};

  var STREAM_LOCK = 'watercooler-stream';
  // Each tab holds a lock of its own for as long as it lives, so the holder
  // can tell (navigator.locks.query) which tabs are gone without a goodbye.
  var TAB_LOCK = 'watercooler-tab-';
  var CHANNEL = 'watercooler';
  // The node's limit on the rooms of one stream.
  var MAX_ROOMS = 16;
  var PRUNE_MS = 20000;
  var NAME = /^[a-z0-9-]{1,32}$/;

  function roomOf(id) {
    var slash = id.indexOf('/');
    return slash > 0 ? id.slice(0, slash) : 'lobby';
  }

  function sameSet(a, b) {
    return (a || []).slice().sort().join(' ') === (b || []).slice().sort().join(' ');
  }

  function never() {
    return new Promise(function () {});
  }

  W.Stream = function (opts) {
    var shared = typeof BroadcastChannel === 'function' && !!navigator.locks &&
      typeof navigator.locks.request === 'function' && typeof navigator.locks.query === 'function';
    var tab = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
    var channel = null;
    // Every tab keeps every tab's rooms, so whichever takes over knows the union.
    var tabs = Object.create(null);
    var role = 'relay';
    // The last id seen in each room, with its arrival number: a new stream
    // resumes after the latest one among the rooms it follows.
    var ids = Object.create(null);
    var arrivals = 0;
    var source = null;
    var sourceRooms = [];
    var state = 'connecting';
    var covered = [];
    var refused = '';
    var presence = null;
    var retryMs = 1000;
    var retryTimer = 0;
    var openPending = false;

    function ownRooms() {
      return opts.rooms().filter(function (r) { return NAME.test(r); }).slice(0, MAX_ROOMS);
    }

    function post(message) {
      if (!channel) return;
      try {
        channel.postMessage(message);
      } catch (e) {
        // A closed channel (the page is going away): nothing to tell.
      }
    }

    function report() {
      opts.onState({ state: state, covered: covered.slice(), refused: refused, role: role });
    }

    // `rooms`: what the stream covers while live (default: as before).
    function setState(next, rooms) {
      state = next;
      covered = next === 'live' ? (rooms || covered) : [];
      if (role === 'holder') post({ t: 'state', state: state, rooms: covered, refused: refused });
      report();
    }

    function deliver(type, id, data) {
      if ((type === 'message' || type === 'backlog') && id) ids[roomOf(id)] = [++arrivals, id];
      if (type === 'presence') presence = data;
      opts.onEvent(type, id, data);
    }

    function relay(type, id, data) {
      post({ t: 'event', type: type, id: id, data: data });
      deliver(type, id, data);
    }

    // The latest id seen in one of `rooms`. An id of a room the stream no
    // longer follows would not resume it (the node says "missed").
    function resumeId(rooms) {
      var best = null;
      rooms.forEach(function (r) {
        var e = ids[r];
        if (e && (!best || e[0] > best[0])) best = e;
      });
      return best ? best[1] : '';
    }

    // This tab's rooms first, so they are never the ones cut at the limit.
    function union() {
      var out = [];
      function add(r) {
        if (out.indexOf(r) < 0 && out.length < MAX_ROOMS) out.push(r);
      }
      (tabs[tab] || []).forEach(add);
      Object.keys(tabs).sort().forEach(function (t) { (tabs[t] || []).forEach(add); });
      return out;
    }

    // (Re)opens the stream when the rooms to follow changed or it is closed.
    function open() {
      openPending = false;
      if (role !== 'holder' && role !== 'own') return;
      var rooms = union();
      if (source && sameSet(rooms, sourceRooms)) return;
      clearTimeout(retryTimer);
      retryTimer = 0;
      if (source) source.close();
      sourceRooms = rooms;
      var query = rooms.map(function (r) { return 'room=' + encodeURIComponent(r); });
      var last = resumeId(rooms);
      if (last) query.push('lastEventId=' + encodeURIComponent(last));
      var url = '/listen?' + query.join('&');
      var es = new EventSource(url);
      source = es;
      // A room change while live: the rooms kept stay live (the new stream
      // replays what they get meanwhile); the rooms added wait for it.
      if (state === 'live') {
        setState('live', covered.filter(function (r) { return rooms.indexOf(r) >= 0; }));
      }

      es.addEventListener('open', function () {
        if (es !== source) return;
        retryMs = 1000;
        refused = '';
        setState('live', sourceRooms.slice());
      });
      es.addEventListener('error', function () {
        if (es !== source) return;
        if (es.readyState === EventSource.CLOSED) {
          // Refused (an HTTP error): the browser gives up; so do we, for a while.
          source = null;
          setState('disconnected');
          probe(url);
          retryTimer = setTimeout(open, retryMs);
          retryMs = Math.min(retryMs * 2, 30000);
        } else {
          // The browser reconnects by itself, sending Last-Event-ID.
          setState('reconnecting');
        }
      });
      ['message', 'backlog', 'presence', 'missed'].forEach(function (type) {
        es.addEventListener(type, function (event) {
          if (es !== source) return;
          // A named event without an id carries the previous one's: ignore it.
          var id = type === 'message' || type === 'backlog' ? event.lastEventId || '' : '';
          relay(type, id, String(event.data));
        });
      });
    }

    // EventSource hides why a stream was refused; ask once with fetch.
    function probe(url) {
      if (typeof fetch !== 'function') return;
      var ctl = typeof AbortController === 'function' ? new AbortController() : null;
      fetch(url, { cache: 'no-store', signal: ctl ? ctl.signal : undefined }).then(function (res) {
        if (res.ok) {
          if (ctl) ctl.abort();
          return null;
        }
        return res.text().then(function (body) {
          refused = '(' + res.status + ') ' + (body.trim() || res.statusText);
          setState(state);
        });
      }).catch(function () {});
    }

    // After the current task: changes that come together reopen once. Not
    // a timer, which a hidden holder's browser would delay by a second.
    function scheduleOpen() {
      if (openPending) return;
      openPending = true;
      Promise.resolve().then(open);
    }

    // Drops the rooms of tabs that closed without saying goodbye.
    function prune() {
      return navigator.locks.query().then(function (snapshot) {
        var alive = Object.create(null);
        (snapshot.held || []).forEach(function (l) { alive[l.name] = true; });
        Object.keys(tabs).forEach(function (t) {
          if (t !== tab && !alive[TAB_LOCK + t]) delete tabs[t];
        });
      }, function () {});
    }

    function takeOver() {
      role = 'holder';
      report();
      post({ t: 'holder', tab: tab });
      prune().then(open);
      setInterval(function () { prune().then(scheduleOpen); }, PRUNE_MS);
      return never();
    }

    // What a tab that just opened needs from the holder: the other tabs,
    // the last ids (so it can take over later without a gap), the state.
    function welcome(to) {
      var order = Object.keys(ids).map(function (r) { return [ids[r][0], r, ids[r][1]]; })
        .sort(function (a, b) { return a[0] - b[0]; })
        .map(function (e) { return [e[1], e[2]]; });
      post({
        t: 'welcome', to: to, tabs: tabs, ids: order, presence: presence,
        state: state, rooms: covered, refused: refused
      });
    }

    function adopt(m) {
      if (Array.isArray(m.ids)) {
        // Older than anything this tab saw itself.
        var n = -m.ids.length;
        m.ids.forEach(function (e) {
          n++;
          if (Array.isArray(e) && NAME.test(e[0]) && typeof e[1] === 'string' && !ids[e[0]]) ids[e[0]] = [n, e[1]];
        });
      }
      if (m.tabs && typeof m.tabs === 'object') {
        Object.keys(m.tabs).forEach(function (t) {
          if (t !== tab && Array.isArray(m.tabs[t])) tabs[t] = m.tabs[t];
        });
      }
      if (typeof m.presence === 'string') deliver('presence', '', m.presence);
      follow(m);
    }

    function follow(m) {
      state = typeof m.state === 'string' ? m.state : state;
      covered = Array.isArray(m.rooms) ? m.rooms : [];
      refused = typeof m.refused === 'string' ? m.refused : '';
      report();
    }

    function onChannel(event) {
      var m = event.data;
      if (!m || typeof m !== 'object' || typeof m.t !== 'string' || m.tab === tab) return;
      switch (m.t) {
        case 'hello':
        case 'rooms':
          if (typeof m.tab !== 'string' || !Array.isArray(m.rooms)) return;
          tabs[m.tab] = m.rooms.filter(function (r) { return NAME.test(r); }).slice(0, MAX_ROOMS);
          if (role === 'holder') {
            if (m.t === 'hello') welcome(m.tab);
            scheduleOpen();
          }
          break;
        case 'bye':
          delete tabs[m.tab];
          if (role === 'holder') scheduleOpen();
          break;
        case 'holder':
          // A new holder: make sure it knows this tab's rooms.
          post({ t: 'rooms', tab: tab, rooms: tabs[tab] || [] });
          break;
        case 'welcome':
          if (m.to === tab && role === 'relay') adopt(m);
          break;
        case 'event':
          if (role === 'relay' && typeof m.type === 'string') {
            deliver(m.type, typeof m.id === 'string' ? m.id : '', String(m.data));
          }
          break;
        case 'state':
          if (role === 'relay') follow(m);
          break;
      }
    }

    function ownStream() {
      role = 'own';
      tabs = Object.create(null);
      tabs[tab] = ownRooms();
      if (channel) channel.close();
      channel = null;
      report();
      open();
    }

    tabs[tab] = ownRooms();
    if (!('EventSource' in window)) {
      role = 'own';
      state = 'unsupported';
      report();
    } else if (shared) {
      channel = new BroadcastChannel(CHANNEL);
      channel.onmessage = onChannel;
      report();
      navigator.locks.request(TAB_LOCK + tab, function () {
        post({ t: 'hello', tab: tab, rooms: tabs[tab] });
        navigator.locks.request(STREAM_LOCK, takeOver).catch(ownStream);
        return never();
      }).catch(ownStream);
    } else {
      ownStream();
    }

    window.addEventListener('pagehide', function () {
      post({ t: 'bye', tab: tab });
      if (source) source.close();
      source = null;
    });
    window.addEventListener('pageshow', function (event) {
      // Back from the back-forward cache: say hello again, reopen if ours.
      if (!event.persisted) return;
      post({ t: 'hello', tab: tab, rooms: tabs[tab] });
      if (role === 'holder' || role === 'own') open();
    });

    return {
      // Call when the rooms this tab follows changed.
      roomsChanged: function () {
        var rooms = ownRooms();
        if (sameSet(rooms, tabs[tab])) return;
        tabs[tab] = rooms;
        post({ t: 'rooms', tab: tab, rooms: rooms });
        if (role === 'holder' || role === 'own') scheduleOpen();
      }
    };
  };
})();
