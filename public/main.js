// watercooler page script: publish without leaving the page, listen with SSE.
// Message text is only ever set with textContent, never parsed as HTML.
'use strict';

(function () {
  var MAX_ITEMS = 500;

  var form = document.getElementById('publish');
  var input = document.getElementById('message');
  var list = document.getElementById('messages');
  var stateEl = document.getElementById('state');
  var presenceEl = document.getElementById('presence');
  var errorEl = document.getElementById('error');

  function setState(state, label) {
    document.body.dataset.state = state;
    stateEl.textContent = label;
  }

  function showError(text) {
    errorEl.textContent = text;
  }

  function timeElement(date) {
    var t = document.createElement('time');
    t.dateTime = date.toISOString();
    t.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    return t;
  }

  // Put an item at the top of the list and drop the oldest beyond the cap.
  function prepend(li) {
    li.appendChild(timeElement(new Date()));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_ITEMS) {
      list.removeChild(list.lastElementChild);
    }
  }

  function addMessage(text, id) {
    var li = document.createElement('li');
    var span = document.createElement('span');
    span.className = 'text';
    span.textContent = text;
    li.appendChild(span);
    if (id) li.dataset.id = id;
    prepend(li);
  }

  function addNotice(text) {
    var li = document.createElement('li');
    li.className = 'notice';
    var span = document.createElement('span');
    span.className = 'text';
    span.textContent = text;
    li.appendChild(span);
    prepend(li);
  }

  function renderPresence(p) {
    var nodes = Array.isArray(p.nodes) ? p.nodes.map(String) : [];
    var listeners = typeof p.listeners === 'number' ? p.listeners : '?';
    presenceEl.textContent = listeners + ' listening · nodes: ' + nodes.join(', ');
  }

  // Publishing: intercept the form so the page never reloads.
  // Without JavaScript the form still posts into the hidden iframe.
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var message = input.value;
    if (message === '') return;
    showError('');
    fetch('/publish', {
      method: 'POST',
      body: new URLSearchParams({ message: message }),
      redirect: 'manual',
      credentials: 'same-origin'
    }).then(function (res) {
      if (res.type === 'opaqueredirect' || res.status === 303 || res.ok) {
        // Only clear if the user has not typed something new meanwhile.
        if (input.value === message) input.value = '';
        input.focus();
        return;
      }
      var reason = res.status === 413 ? 'message too long'
        : res.status === 400 ? 'message empty or invalid'
        : String(res.status);
      showError('Not sent: ' + reason);
      input.focus();
    }, function () {
      showError('Not sent: network error');
      input.focus();
    });
  });

  // Listening: the browser reconnects and sends Last-Event-ID by itself.
  if (!('EventSource' in window)) {
    setState('disconnected', 'this browser cannot receive live messages');
    return;
  }

  var source = new EventSource('/listen');

  source.addEventListener('open', function () {
    setState('live', 'live');
  });

  source.addEventListener('error', function () {
    if (source.readyState === EventSource.CLOSED) {
      setState('disconnected', 'disconnected');
    } else {
      setState('reconnecting', 'reconnecting…');
    }
  });

  source.addEventListener('message', function (event) {
    addMessage(event.data, event.lastEventId);
  });

  source.addEventListener('missed', function (event) {
    addNotice('Some messages were missed' + (event.data ? ': ' + event.data : ''));
  });

  source.addEventListener('presence', function (event) {
    try {
      renderPresence(JSON.parse(event.data));
    } catch (e) {
      // A malformed presence update is ignored; the next one will do.
    }
  });
})();
