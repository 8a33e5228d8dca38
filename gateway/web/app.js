/* The chat web client: plain JavaScript, no build step, no dependencies.
 *
 * It talks to the origin that served it: the HTTP API under /v1 (docs/api.md)
 * and the WebSocket at /v1/ws (docs/protocol.md). Every piece of text that
 * comes from a user or the server is put on the page with textContent (or an
 * attribute through setAttribute), never as HTML.
 */
'use strict';

(function () {
  // ---------------------------------------------------------------- config
  const SESSION_KEY = 'chat.session';
  const PAGE = 50;                      // history page size
  const TYPING_REFRESH_MS = 2500;       // resend "start" this often while typing
  const TYPING_IDLE_MS = 4000;          // send "stop" after this long without input
  const TYPING_TTL_DEFAULT_MS = 6000;   // when a typing frame has no ttl_ms
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const PING_EVERY_MS = 25000;
  const DEAD_AFTER_MS = 70000;          // no frame at all for this long: reconnect
  const MARK_FLUSH_MS = 150;            // batch delivered/read watermarks
  const STATUS_RANK = { pending: 0, sent: 1, delivered: 2, read: 3 };

  // ---------------------------------------------------------------- state
  const state = {
    session: null,        // {user, token, exp}
    convs: new Map(),     // conv id -> conv
    openId: null,         // the conversation shown
    ws: null,
    wsOpen: false,        // hello received
    synced: false,
    attempt: 0,           // reconnect attempts since the last good sync
    reconnectTimer: null,
    countdownTimer: null,
    listOk: false,        // the conversation list has been loaded once
    refreshTimer: null,
    pingTimer: null,
    lastFrameAt: 0,
    outbox: [],           // frames waiting for an open socket
    presence: new Map(),  // user -> {online, last_seen}
    cidCounter: 0,
    listLoading: null,
    listAgain: false,
    typingOut: { conv: null, lastStart: 0, idleTimer: null },
    markTimer: null,
    editing: null,        // {conv, seq} while the composer edits a message
  };

  // Exposed for the end-to-end tests and for debugging from the console.
  window.chatClient = {
    state,
    dropConnection() { if (state.ws) state.ws.close(4999, 'dropped by test'); },
  };

  const drafts = new Map();   // conv id -> unsent text of its composer

  const $ = (id) => document.getElementById(id);
  const el = {
    connState: $('conn-state'), me: $('me'), logout: $('logout'),
    authView: $('auth-view'), authForm: $('auth-form'), authUser: $('auth-user'),
    authPass: $('auth-pass'), registerBtn: $('register-btn'), authError: $('auth-error'),
    appView: $('app-view'), newChatForm: $('new-chat-form'), newChatUser: $('new-chat-user'),
    newGroupForm: $('new-group-form'), groupTitle: $('group-title'), groupMembers: $('group-members'),
    sidebarError: $('sidebar-error'), convList: $('conv-list'), convEmpty: $('conv-empty'),
    chat: $('chat'), noChat: $('no-chat'), back: $('back'), chatTitle: $('chat-title'),
    chatPresence: $('chat-presence'), messages: $('messages'), historyState: $('history-state'),
    messageList: $('message-list'), typing: $('typing'), editBanner: $('edit-banner'),
    editCancel: $('edit-cancel'), composerForm: $('composer-form'), composer: $('composer'),
    toast: $('toast'),
  };

  // ---------------------------------------------------------------- helpers
  function now() { return Date.now(); }

  function newCid(prefix) {
    state.cidCounter += 1;
    const rnd = new Uint32Array(2);
    crypto.getRandomValues(rnd);
    return prefix + '-' + rnd[0].toString(36) + rnd[1].toString(36) + '-' + state.cidCounter.toString(36);
  }

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    if (attrs) for (const k of Object.keys(attrs)) if (attrs[k] != null) n.setAttribute(k, String(attrs[k]));
    if (text != null) n.textContent = String(text);
    return n;
  }

  function fmtTime(ts) {
    if (!ts) return '';
    const d = new Date(ts);
    const today = new Date();
    if (d.toDateString() === today.toDateString())
      return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' +
      d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function fmtAgo(ts) {
    if (!ts) return 'offline';
    const s = Math.max(0, Math.round((now() - ts) / 1000));
    if (s < 60) return 'last seen just now';
    if (s < 3600) return 'last seen ' + Math.round(s / 60) + ' min ago';
    return 'last seen ' + fmtTime(ts);
  }

  let toastTimer = null;
  function toast(msg) {
    el.toast.textContent = msg;
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.toast.hidden = true; }, 5000);
  }

  // ---------------------------------------------------------------- HTTP
  class ApiError extends Error {
    constructor(status, code, message) { super(message || code); this.status = status; this.code = code; }
  }

  async function api(method, path, body, opts) {
    const headers = { Accept: 'application/json' };
    const auth = !(opts && opts.noAuth);
    if (auth && state.session) headers.Authorization = 'Bearer ' + state.session.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store', credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'the server cannot be reached');
    }
    let data = null;
    const text = await res.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (!res.ok) {
      const err = data && data.error ? data.error : {};
      const e = new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText);
      if (auth && res.status === 401 && state.session) logout('Your session has ended; please log in again.');
      throw e;
    }
    return data || {};
  }

  // ---------------------------------------------------------------- session
  function saveSession(s) {
    state.session = { user: s.user, token: s.token, exp: s.exp };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
    scheduleRefresh();
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      if (s && typeof s.token === 'string' && typeof s.user === 'string' && typeof s.exp === 'number') {
        if (s.exp * 1000 > now() + 5000) return s;
      }
    } catch (e) { /* fall through */ }
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    if (!state.session) return;
    const left = state.session.exp * 1000 - now();
    // Refresh at 80% of the remaining life, at least 5 s and at most 10 min
    // before the expiry; retry quickly after a failure.
    const lead = Math.min(600000, Math.max(5000, left * 0.2));
    const wait = Math.max(1000, Math.min(left - lead, 0x7fffffff));
    state.refreshTimer = setTimeout(refreshToken, wait);
  }

  async function refreshToken() {
    if (!state.session) return;
    try {
      const r = await api('POST', '/v1/token');
      if (r && r.token) saveSession({ user: r.user || state.session.user, token: r.token, exp: r.exp });
    } catch (e) {
      if (!state.session) return; // logged out on 401
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(refreshToken, 10000);
    }
  }

  async function authenticate(kind) {
    const username = el.authUser.value.trim();
    const password = el.authPass.value;
    el.authError.textContent = '';
    if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username)) {
      el.authError.textContent = 'The username is 3–32 letters, digits, "_", "." or "-".';
      return;
    }
    if (password.length < 8) {
      el.authError.textContent = 'The password has at least 8 characters.';
      return;
    }
    setAuthBusy(true);
    try {
      const r = await api('POST', kind === 'register' ? '/v1/register' : '/v1/login',
        { username, password }, { noAuth: true });
      el.authPass.value = '';
      saveSession(r);
      startApp();
    } catch (e) {
      const msgs = {
        exists: 'That username is taken.',
        bad_credentials: 'Wrong username or password.',
        rate_limited: 'Too many attempts; wait a minute and try again.',
        network: 'The server cannot be reached.',
      };
      el.authError.textContent = msgs[e.code] || e.message || 'Something went wrong.';
    } finally {
      setAuthBusy(false);
    }
  }

  function setAuthBusy(busy) {
    for (const b of el.authForm.querySelectorAll('button')) b.disabled = busy;
  }

  function logout(reason) {
    stopSocket();
    clearTimeout(state.refreshTimer);
    state.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    state.convs.clear();
    state.presence.clear();
    state.openId = null;
    state.outbox = [];
    drafts.clear();
    el.convList.replaceChildren();
    document.title = 'Chat';
    el.messageList.replaceChildren();
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    showAuth();
    if (reason) el.authError.textContent = reason;
  }

  function showAuth() {
    el.appView.hidden = true;
    el.authView.hidden = false;
    el.logout.hidden = true;
    el.me.textContent = '';
    setConn('offline', 'Offline');
    el.authUser.focus();
  }

  function startApp() {
    el.authView.hidden = true;
    el.appView.hidden = false;
    el.logout.hidden = false;
    el.me.textContent = state.session.user;
    el.me.setAttribute('data-user', state.session.user);
    renderChatPane();
    loadConversations().then(() => {
      const want = convFromHash();
      if (want && state.convs.has(want)) openConv(want);
    }).catch(() => {}).finally(() => connect());
  }

  // ---------------------------------------------------------------- conversations
  function makeConv(c) {
    return {
      id: c.id, kind: c.kind || 'direct', title: c.title || null, owner: c.owner || null,
      members: Array.isArray(c.members) ? c.members.slice() : [],
      lastSeq: c.last_seq || 0,   // highest seq known for the conversation (list or frames)
      gotSeq: 0,                  // highest seq received (frames or history)
      readSeq: c.read_seq || 0,
      unread: c.unread || 0,
      lastMessage: c.last_message || null,
      activity: (c.last_message && c.last_message.ts) || c.created_ts || 0,
      msgs: new Map(),            // seq -> message
      pending: new Map(),         // cid -> message without a seq yet
      patches: new Map(),         // target seq -> latest edit/delete seen before its message
      marks: new Map(),           // user -> {delivered, read} of the other members
      oldest: null,               // smallest seq loaded through history
      historyDone: false,
      historyLoaded: false,
      loadingHistory: null,
      sentDelivered: 0,
      sentRead: c.read_seq || 0,
      typing: new Map(),          // user -> expiry timer
      li: null,
    };
  }

  function mergeConv(c) {
    let conv = state.convs.get(c.id);
    if (!conv) {
      conv = makeConv(c);
      state.convs.set(c.id, conv);
      if (Array.isArray(c.marks)) for (const m of c.marks) noteMark(conv, m.user, 'delivered', m.delivered_seq || 0, m.read_seq || 0);
      return conv;
    }
    conv.kind = c.kind || conv.kind;
    conv.title = c.title !== undefined ? c.title : conv.title;
    conv.owner = c.owner !== undefined ? c.owner : conv.owner;
    if (Array.isArray(c.members)) conv.members = c.members.slice();
    if (typeof c.last_seq === 'number' && c.last_seq > conv.lastSeq) conv.lastSeq = c.last_seq;
    if (typeof c.read_seq === 'number') {
      conv.readSeq = Math.max(conv.readSeq, c.read_seq);
      conv.sentRead = Math.max(conv.sentRead, c.read_seq);
    }
    if (typeof c.unread === 'number' && state.openId !== c.id) conv.unread = c.unread;
    if (c.last_message && (!conv.lastMessage || c.last_message.seq >= conv.lastMessage.seq)) {
      conv.lastMessage = c.last_message;
      conv.activity = Math.max(conv.activity, c.last_message.ts || 0);
    }
    return conv;
  }

  // Loads the conversation list; concurrent callers share one request and a
  // call made during a request makes one more afterwards.
  function loadConversations() {
    if (state.listLoading) { state.listAgain = true; return state.listLoading; }
    state.listLoading = (async () => {
      try {
        const r = await api('GET', '/v1/conversations');
        const seen = new Set();
        for (const c of r.conversations || []) { mergeConv(c); seen.add(c.id); }
        for (const id of Array.from(state.convs.keys())) if (!seen.has(id)) dropConv(id);
        state.listOk = true;
        renderConvList();
        loadPresence();
        el.sidebarError.textContent = '';
      } catch (e) {
        if (state.session) el.sidebarError.textContent = 'Could not load conversations: ' + e.message;
        throw e;
      } finally {
        state.listLoading = null;
        if (state.listAgain) { state.listAgain = false; loadConversations().catch(() => {}); }
      }
    })();
    return state.listLoading;
  }

  let listReloadTimer = null;
  function reloadListSoon() {
    clearTimeout(listReloadTimer);
    listReloadTimer = setTimeout(() => loadConversations().catch(() => {}), 200);
  }

  function dropConv(id) {
    const conv = state.convs.get(id);
    if (!conv) return;
    for (const t of conv.typing.values()) clearTimeout(t);
    state.convs.delete(id);
    if (conv.li) conv.li.remove();
    if (state.openId === id) closeConv();
    renderConvList();
  }

  function otherMembers(conv) {
    const me = state.session ? state.session.user : null;
    return conv.members.filter((m) => m !== me);
  }

  function convTitle(conv) {
    if (conv.kind === 'group') return conv.title || otherMembers(conv).join(', ') || 'Group';
    const others = otherMembers(conv);
    return others[0] || (state.session && state.session.user) || conv.id;
  }

  function convOnline(conv) {
    return otherMembers(conv).filter((u) => (state.presence.get(u) || {}).online).length;
  }

  function renderConvList() {
    const convs = Array.from(state.convs.values()).sort((a, b) => (b.activity - a.activity) || (a.id < b.id ? -1 : 1));
    const frag = document.createDocumentFragment();
    for (const conv of convs) frag.appendChild(renderConvItem(conv));
    el.convList.replaceChildren(frag);
    el.convEmpty.hidden = convs.length > 0;
    updateTitle();
  }

  function updateTitle() {
    let n = 0;
    for (const conv of state.convs.values()) n += conv.unread;
    document.title = n > 0 ? '(' + n + ') Chat' : 'Chat';
  }

  function renderConvItem(conv) {
    let li = conv.li;
    if (!li) {
      li = node('li', { class: 'conv-item', 'data-testid': 'conv-item', 'data-conv': conv.id, tabindex: '0', role: 'button' });
      const dot = node('span', { class: 'presence-dot', 'data-testid': 'conv-presence' });
      const main = node('div', { class: 'conv-main' });
      const top = node('div', { class: 'conv-top' });
      top.append(node('span', { class: 'conv-title', 'data-testid': 'conv-title' }), node('span', { class: 'conv-time' }));
      const bottom = node('div', { class: 'conv-bottom' });
      bottom.append(node('span', { class: 'conv-last', 'data-testid': 'conv-last' }),
        node('span', { class: 'badge', 'data-testid': 'conv-unread' }));
      main.append(top, bottom);
      li.append(dot, main);
      li.addEventListener('click', () => openConv(conv.id));
      li.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openConv(conv.id); } });
      conv.li = li;
    }
    const online = convOnline(conv);
    li.setAttribute('data-unread', String(conv.unread));
    li.setAttribute('data-online', online > 0 ? 'true' : 'false');
    li.setAttribute('data-kind', conv.kind);
    li.classList.toggle('active', state.openId === conv.id);
    li.classList.toggle('has-unread', conv.unread > 0);
    li.querySelector('.presence-dot').classList.toggle('online', online > 0);
    li.querySelector('.presence-dot').title = online > 0 ? 'online' : 'offline';
    li.querySelector('.conv-title').textContent = convTitle(conv);
    const lm = conv.lastMessage;
    li.querySelector('.conv-time').textContent = lm ? fmtTime(lm.ts) : '';
    let preview = '';
    if (lm) {
      const who = lm.from === state.session.user ? 'You: ' : (conv.kind === 'group' ? lm.from + ': ' : '');
      preview = lm.deleted ? who + 'message deleted' : who + (lm.body || '');
    } else if (conv.kind === 'group') {
      preview = conv.members.length + ' members';
    }
    li.querySelector('.conv-last').textContent = preview;
    const badge = li.querySelector('.badge');
    badge.textContent = conv.unread > 99 ? '99+' : String(conv.unread);
    badge.hidden = conv.unread <= 0;
    updateTitle();
    return li;
  }

  function touchConv(conv) {
    if (conv.li) renderConvItem(conv);
    // Move to its place by activity without rebuilding the list.
    renderConvList();
  }

  async function startDirect(name) {
    name = name.trim();
    el.sidebarError.textContent = '';
    if (!name) return;
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name)) { el.sidebarError.textContent = 'Not a valid username.'; return; }
    try {
      const r = await api('POST', '/v1/conversations', { members: [name] });
      mergeConv({ id: r.id, kind: r.kind || 'direct', members: r.members || [state.session.user, name] });
      renderConvList();
      loadPresence();
      el.newChatUser.value = '';
      openConv(r.id);
    } catch (e) {
      const msgs = { not_found: 'No user called "' + name + '".', bad_request: 'Cannot start that chat.' };
      el.sidebarError.textContent = msgs[e.code] || e.message;
    }
  }

  async function createGroup(title, membersText) {
    el.sidebarError.textContent = '';
    const members = membersText.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
    if (members.length === 0) { el.sidebarError.textContent = 'Name at least one member.'; return; }
    try {
      const body = { kind: 'group', members };
      if (title.trim()) body.title = title.trim();
      const r = await api('POST', '/v1/conversations', body);
      mergeConv({ id: r.id, kind: 'group', title: body.title || null, owner: state.session.user,
        members: r.members || [state.session.user].concat(members), created_ts: now() });
      renderConvList();
      loadPresence();
      el.groupTitle.value = '';
      el.groupMembers.value = '';
      el.newGroupForm.closest('details').open = false;
      openConv(r.id);
    } catch (e) {
      const msgs = { not_found: 'A member does not exist.', too_large: 'Too many members.' };
      el.sidebarError.textContent = msgs[e.code] || e.message;
    }
  }

  // ---------------------------------------------------------------- presence
  async function loadPresence() {
    const users = new Set();
    for (const conv of state.convs.values()) for (const u of otherMembers(conv)) users.add(u);
    if (users.size === 0) return;
    const list = Array.from(users);
    try {
      for (let i = 0; i < list.length; i += 100) {
        const part = list.slice(i, i + 100).map(encodeURIComponent).join(',');
        const r = await api('GET', '/v1/presence?users=' + part);
        for (const p of r.presence || []) state.presence.set(p.user, { online: !!p.online, last_seen: p.last_seen || 0 });
      }
      renderPresence();
    } catch (e) { /* presence is best effort */ }
  }

  function renderPresence() {
    for (const conv of state.convs.values()) if (conv.li) renderConvItem(conv);
    renderChatHeader();
  }

  // ---------------------------------------------------------------- opening a chat
  function convFromHash() {
    const m = /^#\/c\/(.+)$/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }

  function openConv(id) {
    const conv = state.convs.get(id);
    if (!conv) return;
    if (state.openId && state.openId !== id) typingStop();
    cancelEdit();
    state.openId = id;
    const hash = '#/c/' + encodeURIComponent(id);
    if (location.hash !== hash) history.replaceState(null, '', hash);
    document.body.classList.add('chat-open');
    el.messageList.replaceChildren();
    for (const m of sortedMessages(conv)) el.messageList.appendChild(renderMessage(conv, m));
    renderChatPane();
    renderTyping();
    for (const c of state.convs.values()) if (c.li) c.li.classList.toggle('active', c.id === id);
    scrollToBottom();
    if (!conv.historyLoaded) loadHistory(conv, true);
    else {
      if (conv.stale) refreshNewest(conv);
      fillViewport(conv);
      markRead(conv);
    }
    el.composer.value = draftFor(id);
    el.composer.focus();
  }

  function closeConv() {
    typingStop();
    cancelEdit();
    state.openId = null;
    document.body.classList.remove('chat-open');
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    el.messageList.replaceChildren();
    renderChatPane();
    for (const c of state.convs.values()) if (c.li) c.li.classList.remove('active');
  }

  function draftFor(id) { return drafts.get(id) || ''; }

  function renderChatPane() {
    const open = state.openId ? state.convs.get(state.openId) : null;
    el.chat.hidden = !open;
    el.noChat.hidden = !!open;
    if (open) {
      el.chat.setAttribute('data-conv', open.id);
      renderChatHeader();
      renderHistoryState(open);
    } else {
      el.chat.removeAttribute('data-conv');
    }
  }

  function renderChatHeader() {
    const conv = state.openId ? state.convs.get(state.openId) : null;
    if (!conv) return;
    el.chatTitle.textContent = convTitle(conv);
    const others = otherMembers(conv);
    let text;
    let online = false;
    if (conv.kind === 'group') {
      const n = convOnline(conv);
      text = conv.members.length + ' members, ' + n + ' online';
      online = n > 0;
    } else {
      const p = state.presence.get(others[0]);
      online = !!(p && p.online);
      text = !p ? '' : online ? 'online' : fmtAgo(p.last_seen);
    }
    el.chatPresence.textContent = text;
    el.chatPresence.setAttribute('data-online', online ? 'true' : 'false');
  }

  function renderHistoryState(conv) {
    let text = '';
    let st = 'idle';
    if (conv.loadingHistory) { text = 'Loading…'; st = 'loading'; }
    else if (conv.historyDone) { text = conv.msgs.size ? 'Start of the conversation' : 'No messages yet. Say hello!'; st = 'done'; }
    el.historyState.textContent = text;
    el.historyState.setAttribute('data-state', st);
  }

  // ---------------------------------------------------------------- history
  function loadHistory(conv, first) {
    if (conv.loadingHistory || conv.historyDone) return conv.loadingHistory;
    const before = first ? null : conv.oldest;
    const q = '?limit=' + PAGE + (before ? '&before=' + before : '');
    const box = el.messages;
    const isOpen = () => state.openId === conv.id;
    conv.loadingHistory = (async () => {
      if (isOpen()) renderHistoryState(conv);
      try {
        const r = await api('GET', '/v1/conversations/' + encodeURIComponent(conv.id) + '/messages' + q);
        const oldHeight = box.scrollHeight;
        const oldTop = box.scrollTop;
        const list = Array.isArray(r.messages) ? r.messages : [];
        for (const m of list) takeStored(conv, m);
        for (const m of list) if (typeof m.seq === 'number' && (conv.oldest == null || m.seq < conv.oldest)) conv.oldest = m.seq;
        if (typeof r.next_before === 'number' && r.next_before > 0) {
          if (conv.oldest == null || r.next_before < conv.oldest) conv.oldest = r.next_before;
        } else {
          conv.historyDone = true;
        }
        if (list.length === 0) conv.historyDone = true;
        conv.historyLoaded = true;
        conv.loadingHistory = null;
        if (isOpen()) {
          renderHistoryState(conv);
          if (first) scrollToBottom();
          else box.scrollTop = oldTop + (box.scrollHeight - oldHeight); // keep the view still
          markRead(conv);
          fillViewport(conv);
        }
      } catch (e) {
        conv.loadingHistory = null;
        if (isOpen()) { renderHistoryState(conv); el.historyState.textContent = 'Could not load history: ' + e.message; }
      }
    })();
    return conv.loadingHistory;
  }

  // If the loaded page does not fill the view, nothing can be scrolled:
  // load the next one.
  function fillViewport(conv) {
    if (state.openId !== conv.id || conv.historyDone || conv.loadingHistory) return;
    if (el.messages.scrollHeight <= el.messages.clientHeight + 40) loadHistory(conv, false);
  }

  function takeStored(conv, m) {
    if (typeof m.seq !== 'number') return;
    // An event (edit, delete, membership) is not a message: it has a type or
    // a target, or neither a body nor a tombstone.
    if (m.target != null || (m.t && m.t !== 'message') || (m.type && m.type !== 'message') ||
        (typeof m.body !== 'string' && !m.deleted)) {
      noteSeq(conv, m.seq);
      return;
    }
    upsertMessage(conv, {
      seq: m.seq, id: m.id, from: m.from, ts: m.ts, cid: m.cid || null,
      body: m.deleted ? '' : (m.body || ''), deleted: !!m.deleted, edited_ts: m.edited_ts || 0,
    }, false);
  }

  // ---------------------------------------------------------------- messages
  function sortedMessages(conv) {
    const held = Array.from(conv.msgs.values()).sort((a, b) => a.seq - b.seq);
    return held.concat(Array.from(conv.pending.values()));
  }

  function isMine(m) { return state.session && m.from === state.session.user; }

  // Computes the tick of one of my messages from the other members' marks.
  function statusOf(conv, m) {
    if (m.failed) return 'failed';
    if (m.seq == null) return m.sentAck ? 'sent' : 'pending';
    const others = otherMembers(conv);
    if (others.length === 0) return 'sent';
    let allRead = true;
    let allDelivered = true;
    for (const u of others) {
      const mk = conv.marks.get(u) || { delivered: 0, read: 0 };
      if (mk.read < m.seq) allRead = false;
      if (Math.max(mk.delivered, mk.read) < m.seq) allDelivered = false;
    }
    return allRead ? 'read' : allDelivered ? 'delivered' : 'sent';
  }

  // Adds or updates one message (by seq) and its element. `live` says it came
  // as a frame, not from the history endpoint.
  function upsertMessage(conv, data, live) {
    let m = conv.msgs.get(data.seq);
    let isNew = false;
    if (!m) {
      // My own send coming back with its seq: the pending one becomes it.
      if (data.cid && data.from === (state.session && state.session.user) && conv.pending.has(data.cid)) {
        m = conv.pending.get(data.cid);
        conv.pending.delete(data.cid);
        m.seq = data.seq; m.id = data.id; m.ts = data.ts || m.ts; m.failed = false;
        m.body = data.body != null ? data.body : m.body;
        removeFromOutbox(data.cid);
      } else {
        m = { seq: data.seq, id: data.id, from: data.from, ts: data.ts, cid: data.cid, body: data.body || '',
          deleted: !!data.deleted, edited_ts: data.edited_ts || 0, el: null };
        isNew = true;
      }
      conv.msgs.set(m.seq, m);
    } else {
      // A later copy may carry an edit or a delete the held one lacks.
      if (data.deleted && !m.deleted) { m.deleted = true; m.body = ''; m.edited_ts = data.edited_ts || m.edited_ts; }
      else if (!m.deleted && (data.edited_ts || 0) > (m.edited_ts || 0)) { m.body = data.body; m.edited_ts = data.edited_ts; }
    }
    const patch = conv.patches.get(m.seq);
    if (patch) { applyPatch(m, patch); conv.patches.delete(m.seq); }
    noteSeq(conv, m.seq);
    if (!conv.lastMessage || m.seq >= conv.lastMessage.seq) {
      conv.lastMessage = { seq: m.seq, from: m.from, ts: m.ts, body: m.body, deleted: m.deleted };
      conv.activity = Math.max(conv.activity, m.ts || 0);
    }
    if (live && isNew && !isMine(m)) {
      if (!(state.openId === conv.id && pageVisible())) {
        if (m.seq > conv.readSeq) conv.unread += 1;
      }
      // Their typing ends with their message.
      clearTyping(conv, m.from);
    }
    placeMessage(conv, m);
    return m;
  }

  function noteSeq(conv, seq) {
    if (typeof seq !== 'number') return;
    if (seq > conv.lastSeq) conv.lastSeq = seq;
    if (seq > conv.gotSeq) conv.gotSeq = seq;
  }

  function applyPatch(m, p) {
    if (p.deleted) { m.deleted = true; m.body = ''; m.edited_ts = Math.max(m.edited_ts || 0, p.ts || 0); return; }
    if (m.deleted) return;
    if ((p.ts || 0) >= (m.edited_ts || 0)) { m.body = p.body; m.edited_ts = p.ts || 1; }
  }

  // Puts the element of m at its place (by seq; pending ones at the end) if
  // the conversation is open.
  function placeMessage(conv, m) {
    if (state.openId !== conv.id) return;
    const li = renderMessage(conv, m);
    const list = el.messageList;
    const atBottom = nearBottom();
    if (m.seq == null) {
      if (li.parentNode !== list) list.appendChild(li);
    } else {
      // Find the first element with a larger seq or without one.
      let ref = null;
      for (let c = list.lastElementChild; c; c = c.previousElementSibling) {
        if (c === li) continue;
        const s = c.getAttribute('data-seq');
        if (s === null || s === '' || Number(s) > m.seq) ref = c; else break;
      }
      if (li.nextElementSibling !== ref || li.parentNode !== list) list.insertBefore(li, ref);
    }
    if (atBottom || (isMine(m) && m.seq == null)) scrollToBottom();
    if (conv.historyDone && el.historyState.getAttribute('data-state') === 'done') renderHistoryState(conv);
  }

  function renderMessage(conv, m) {
    let li = m.el;
    if (!li) {
      li = node('li', { class: 'message', 'data-testid': 'message' });
      const bubble = node('div', { class: 'bubble' });
      const author = node('div', { class: 'author', 'data-testid': 'message-author' });
      const body = node('div', { class: 'body', 'data-testid': 'message-body', dir: 'auto' });
      const meta = node('div', { class: 'meta' });
      meta.append(
        node('span', { class: 'edited', 'data-testid': 'edited' }, '(edited)'),
        node('time', { class: 'time', 'data-testid': 'message-time' }),
        node('span', { class: 'ticks', 'data-testid': 'ticks', 'aria-label': '' }));
      bubble.append(author, body, meta);
      li.append(bubble);
      if (isMine(m)) {
        const actions = node('div', { class: 'actions' });
        const edit = node('button', { type: 'button', class: 'link', 'data-testid': 'edit' }, 'Edit');
        const del = node('button', { type: 'button', class: 'link danger', 'data-testid': 'delete' }, 'Delete');
        const retry = node('button', { type: 'button', class: 'link', 'data-testid': 'retry' }, 'Retry');
        edit.addEventListener('click', () => beginEdit(conv, m));
        del.addEventListener('click', () => confirmDelete(conv, m, del));
        retry.addEventListener('click', () => retrySend(conv, m));
        actions.append(edit, del, retry);
        li.append(actions);
      }
      m.el = li;
    }
    const mine = isMine(m);
    li.classList.toggle('mine', !!mine);
    li.setAttribute('data-from', m.from || '');
    if (m.seq != null) li.setAttribute('data-seq', String(m.seq)); else li.removeAttribute('data-seq');
    if (m.cid) li.setAttribute('data-cid', m.cid);
    li.setAttribute('data-deleted', m.deleted ? 'true' : 'false');
    li.setAttribute('data-edited', m.edited_ts && !m.deleted ? 'true' : 'false');
    li.querySelector('.author').textContent = mine ? '' : m.from;
    li.querySelector('.author').hidden = mine || conv.kind !== 'group';
    const body = li.querySelector('.body');
    body.textContent = m.deleted ? 'message deleted' : m.body;
    body.classList.toggle('tombstone', !!m.deleted);
    li.querySelector('.edited').hidden = !(m.edited_ts && !m.deleted);
    const t = li.querySelector('.time');
    t.textContent = fmtTime(m.ts);
    if (m.ts) t.setAttribute('datetime', new Date(m.ts).toISOString());
    const ticks = li.querySelector('.ticks');
    if (mine) {
      const st = statusOf(conv, m);
      li.setAttribute('data-status', st);
      const glyph = { pending: '◷', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' }[st];
      ticks.textContent = glyph;
      ticks.setAttribute('aria-label', st);
      ticks.title = st;
      ticks.className = 'ticks ' + st;
      const actions = li.querySelector('.actions');
      actions.hidden = false;
      li.querySelector('[data-testid="edit"]').hidden = m.deleted || m.seq == null;
      li.querySelector('[data-testid="delete"]').hidden = m.deleted || m.seq == null;
      li.querySelector('[data-testid="retry"]').hidden = st !== 'failed';
    } else {
      li.removeAttribute('data-status');
      ticks.textContent = '';
    }
    return li;
  }

  function refreshMyStatuses(conv) {
    for (const m of conv.msgs.values()) {
      if (!isMine(m) || !m.el) continue;
      const before = m.el.getAttribute('data-status');
      if (before !== statusOf(conv, m)) renderMessage(conv, m);
    }
  }

  function nearBottom() {
    const b = el.messages;
    return b.scrollHeight - b.scrollTop - b.clientHeight < 80;
  }

  function scrollToBottom() {
    el.messages.scrollTop = el.messages.scrollHeight;
  }

  // ---------------------------------------------------------------- sending
  function sendMessage(text) {
    const conv = state.convs.get(state.openId);
    if (!conv) return;
    if (new TextEncoder().encode(text).length > 4096) { toast('The message is too long (4096 bytes at most).'); return; }
    const cid = newCid('m');
    const m = { seq: null, cid, from: state.session.user, ts: now(), body: text, deleted: false, edited_ts: 0, el: null, sentAck: false, failed: false };
    conv.pending.set(cid, m);
    placeMessage(conv, m);
    scrollToBottom();
    conv.lastMessage = { seq: conv.lastSeq, from: m.from, ts: m.ts, body: text };
    conv.activity = m.ts;
    touchConv(conv);
    queueFrame({ t: 'send', conv: conv.id, cid, body: text }, cid);
  }

  function retrySend(conv, m) {
    if (m.seq != null || !conv.pending.has(m.cid)) return;
    m.failed = false;
    renderMessage(conv, m);
    queueFrame({ t: 'send', conv: conv.id, cid: m.cid, body: m.body }, m.cid);
  }

  // Frames with a cid stay in the outbox until answered (sent or error), so
  // a reconnect resends them; the cid makes a resend the same event.
  function queueFrame(frame, cid) {
    if (cid) state.outbox.push({ frame, cid, acked: false });
    if (state.wsOpen) wsSend(frame);
    else if (!cid) state.outbox.push({ frame, cid: null });
  }

  function removeFromOutbox(cid) {
    state.outbox = state.outbox.filter((o) => o.cid !== cid);
  }

  function flushOutbox() {
    const keep = [];
    for (const o of state.outbox) {
      if (o.cid) { wsSend(o.frame); keep.push(o); } else wsSend(o.frame);
    }
    state.outbox = keep;
  }

  function beginEdit(conv, m) {
    if (m.deleted || m.seq == null) return;
    state.editing = { conv: conv.id, seq: m.seq };
    el.editBanner.hidden = false;
    el.composer.value = m.body;
    el.composer.focus();
    el.composer.setSelectionRange(m.body.length, m.body.length);
    autoGrow();
  }

  function cancelEdit() {
    if (!state.editing) return;
    state.editing = null;
    el.editBanner.hidden = true;
    el.composer.value = state.openId ? draftFor(state.openId) : '';
    autoGrow();
  }

  function submitEdit(text) {
    const { conv: id, seq } = state.editing;
    const conv = state.convs.get(id);
    const m = conv && conv.msgs.get(seq);
    state.editing = null;
    el.editBanner.hidden = true;
    if (!m || m.deleted) return;
    if (text === m.body) return;
    const cid = newCid('e');
    queueFrame({ t: 'edit', conv: id, target: seq, body: text, cid }, cid);
  }

  function confirmDelete(conv, m, btn) {
    if (btn.getAttribute('data-confirm') === 'true') {
      btn.removeAttribute('data-confirm');
      btn.textContent = 'Delete';
      const cid = newCid('x');
      queueFrame({ t: 'delete', conv: conv.id, target: m.seq, cid }, cid);
      return;
    }
    btn.setAttribute('data-confirm', 'true');
    btn.textContent = 'Delete?';
    setTimeout(() => { btn.removeAttribute('data-confirm'); btn.textContent = 'Delete'; }, 4000);
  }

  // ---------------------------------------------------------------- receipts
  function pageVisible() { return document.visibilityState === 'visible'; }

  function noteMark(conv, user, kind, upto, readUpto) {
    const mk = conv.marks.get(user) || { delivered: 0, read: 0 };
    if (kind === 'delivered') mk.delivered = Math.max(mk.delivered, upto);
    if (kind === 'read') mk.read = Math.max(mk.read, upto);
    if (readUpto) mk.read = Math.max(mk.read, readUpto);
    conv.marks.set(user, mk);
  }

  function scheduleMarks() {
    if (state.markTimer) return;
    state.markTimer = setTimeout(() => { state.markTimer = null; flushMarks(); }, MARK_FLUSH_MS);
  }

  function highestOthers(conv) {
    let top = 0;
    for (const m of conv.msgs.values()) if (!isMine(m) && m.seq > top) top = m.seq;
    return top;
  }

  // Sends the delivered watermark of every conversation that moved, and the
  // read one of the open conversation if the page is seen.
  function flushMarks() {
    if (!state.wsOpen) return;
    for (const conv of state.convs.values()) {
      const top = conv.gotSeq;
      if (top > conv.sentDelivered && highestOthers(conv) > conv.sentDelivered) {
        conv.sentDelivered = top;
        wsSend({ t: 'delivered', conv: conv.id, upto: top });
      }
    }
    const open = state.openId && state.convs.get(state.openId);
    if (open && pageVisible() && open.historyLoaded) {
      const top = open.gotSeq;
      if (top > open.sentRead) {
        open.sentRead = top;
        open.readSeq = Math.max(open.readSeq, top);
        wsSend({ t: 'read', conv: open.id, upto: top });
      }
    }
  }

  function markRead(conv) {
    if (state.openId !== conv.id || !pageVisible()) return;
    if (conv.unread !== 0) { conv.unread = 0; if (conv.li) renderConvItem(conv); }
    scheduleMarks();
  }

  // ---------------------------------------------------------------- typing
  function typingInput() {
    const id = state.openId;
    if (!id || state.editing) return;
    const t = state.typingOut;
    if (t.conv && t.conv !== id) typingStop();
    const since = now() - t.lastStart;
    if (t.conv !== id || since > TYPING_REFRESH_MS) {
      t.conv = id;
      t.lastStart = now();
      if (state.wsOpen) wsSend({ t: 'typing', conv: id, state: 'start' });
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(typingStop, TYPING_IDLE_MS);
  }

  function typingStop() {
    const t = state.typingOut;
    clearTimeout(t.idleTimer);
    if (t.conv && state.wsOpen) wsSend({ t: 'typing', conv: t.conv, state: 'stop' });
    t.conv = null;
    t.lastStart = 0;
  }

  function onTyping(f) {
    const conv = state.convs.get(f.conv);
    if (!conv || !f.user || f.user === state.session.user) return;
    clearTimeout(conv.typing.get(f.user));
    if (f.state === 'start') {
      const ttl = typeof f.ttl_ms === 'number' && f.ttl_ms > 0 ? f.ttl_ms : TYPING_TTL_DEFAULT_MS;
      conv.typing.set(f.user, setTimeout(() => clearTyping(conv, f.user), ttl));
    } else {
      conv.typing.delete(f.user);
    }
    renderTyping();
  }

  function clearTyping(conv, user) {
    if (!conv.typing.has(user)) return;
    clearTimeout(conv.typing.get(user));
    conv.typing.delete(user);
    renderTyping();
  }

  function renderTyping() {
    const conv = state.openId && state.convs.get(state.openId);
    const users = conv ? Array.from(conv.typing.keys()) : [];
    if (users.length === 0) {
      el.typing.hidden = true;
      el.typing.textContent = '';
      el.typing.removeAttribute('data-users');
      return;
    }
    el.typing.hidden = false;
    el.typing.setAttribute('data-users', users.join(','));
    el.typing.textContent = users.length === 1 ? users[0] + ' is typing…'
      : users.length === 2 ? users[0] + ' and ' + users[1] + ' are typing…'
        : users.length + ' people are typing…';
  }

  // ---------------------------------------------------------------- WebSocket
  function setConn(st, text) {
    el.connState.setAttribute('data-state', st);
    el.connState.textContent = text;
    document.body.setAttribute('data-conn', st);
  }

  function wsSend(frame) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    if (!state.session || state.ws) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    setConn('connecting', state.attempt ? 'Reconnecting…' : 'Connecting…');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(proto + '//' + location.host + '/v1/ws?token=' + encodeURIComponent(state.session.token));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.wsOpen = false;
    state.synced = false;
    state.lastFrameAt = now();
    ws.onmessage = (ev) => {
      if (state.ws !== ws) return;
      state.lastFrameAt = now();
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f && typeof f === 'object') onFrame(f);
    };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.wsOpen = false;
      state.synced = false;
      clearInterval(state.pingTimer);
      typingReset();
      if (state.session) scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  function stopSocket() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    clearInterval(state.pingTimer);
    const ws = state.ws;
    state.ws = null;
    state.wsOpen = false;
    if (ws) { try { ws.close(1000, 'bye'); } catch (e) { /* ignore */ } }
  }

  function typingReset() {
    for (const conv of state.convs.values()) {
      for (const t of conv.typing.values()) clearTimeout(t);
      conv.typing.clear();
    }
    renderTyping();
    state.typingOut.conv = null;
  }

  // Full jitter over an exponential bound: the first retry comes within
  // 0.5 s, then within 1, 2, 4 ... 30 s.
  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const bound = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    const delay = Math.round(bound / 2 + Math.random() * bound / 2);
    state.attempt += 1;
    const at = now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((at - now()) / 1000));
      setConn('reconnecting', navigator.onLine === false ? 'Offline — waiting for the network' : 'Disconnected — retrying in ' + left + ' s');
    };
    tick();
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(tick, 1000);
    state.reconnectTimer = setTimeout(async () => {
      clearInterval(state.countdownTimer);
      state.reconnectTimer = null;
      if (!state.session) return;
      // After a few failures, check the token: a refused upgrade looks like
      // any other failure to the browser.
      if (state.attempt >= 2) {
        try { await api('GET', '/v1/me'); } catch (e) {
          if (!state.session) return;
        }
      }
      if (state.session.exp * 1000 - now() < 60000) await refreshToken();
      if (state.session) connect();
    }, delay);
  }

  function reconnectNow() {
    if (!state.session || state.ws) return;
    if (state.reconnectTimer) {
      clearTimeout(state.reconnectTimer);
      clearInterval(state.countdownTimer);
      state.reconnectTimer = null;
    }
    connect();
  }

  function startSync() {
    const have = {};
    // A conversation whose messages we hold asks for everything above the
    // highest one held; one we only know from the list asks for what came
    // after the list's last_seq (older ones come from history when opened).
    for (const conv of state.convs.values()) have[conv.id] = conv.historyLoaded ? conv.gotSeq : Math.max(conv.lastSeq, conv.gotSeq);
    wsSend({ t: 'sync', have });
  }

  function onFrame(f) {
    switch (f.t) {
      case 'hello': return onHello(f);
      case 'synced': return onSynced(f);
      case 'message': return onMessage(f);
      case 'sent': return onSent(f);
      case 'receipt': return onReceipt(f);
      case 'edit': return onChange(f, false);
      case 'delete': return onChange(f, true);
      case 'typing': return onTyping(f);
      case 'presence': return onPresence(f);
      case 'member': return onMember(f);
      case 'conv_deleted': return onConvDeleted(f);
      case 'error': return onError(f);
      case 'pong': return undefined;
      default: return undefined;
    }
  }

  function onHello(f) {
    state.wsOpen = true;
    el.me.setAttribute('data-conn', f.conn || '');
    setConn('syncing', 'Syncing…');
    // New conversations may have started while we were away: refresh the
    // list first, then ask for what is missing of each.
    // Without the list, a sync would stream every conversation from seq 1.
    const ws = state.ws;
    const after = state.attempt > 0 || !state.listOk ? loadConversations() : Promise.resolve();
    after.then(() => {
      if (state.ws !== ws || !state.wsOpen) return;
      startSync();
      flushOutbox();
    }, () => { if (state.ws === ws) ws.close(4000, 'no conversation list'); });
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => {
      if (now() - state.lastFrameAt > DEAD_AFTER_MS) { if (state.ws) state.ws.close(4000, 'silent'); return; }
      wsSend({ t: 'ping' });
    }, PING_EVERY_MS);
  }

  function onSynced() {
    state.synced = true;
    state.attempt = 0;
    setConn('online', 'Connected');
    loadPresence();
    scheduleMarks();
    // Edits and deletes of older messages made while we were away are not
    // in a sync that starts above them: reload the newest page of the open
    // conversation to pick them up.
    for (const conv of state.convs.values()) if (conv.historyLoaded) conv.stale = true;
    const open = state.openId && state.convs.get(state.openId);
    if (open && open.historyLoaded) refreshNewest(open);
  }

  async function refreshNewest(conv) {
    conv.stale = false;
    try {
      const r = await api('GET', '/v1/conversations/' + encodeURIComponent(conv.id) + '/messages?limit=' + PAGE);
      for (const m of r.messages || []) takeStored(conv, m);
    } catch (e) { conv.stale = true; }
  }

  function onMessage(f) {
    if (!f.conv || typeof f.seq !== 'number') return;
    let conv = state.convs.get(f.conv);
    if (typeof f.body !== 'string' && !f.deleted) { // not a message (see takeStored)
      if (conv) noteSeq(conv, f.seq);
      return;
    }
    if (!conv) {
      // A conversation we do not know yet (someone just started it).
      conv = mergeConv({ id: f.conv, kind: f.conv.startsWith('g.') ? 'group' : 'direct', members: [state.session.user, f.from] });
      reloadListSoon();
    }
    // A sent body is never empty, so an empty one is a tombstone even when
    // the frame (as sync builds it) lacks "deleted".
    const deleted = !!f.deleted || f.body === '';
    upsertMessage(conv, {
      seq: f.seq, id: f.id, from: f.from, ts: f.ts, cid: f.cid || null,
      body: deleted ? '' : (f.body || ''), deleted, edited_ts: f.edited_ts || 0,
    }, true);
    touchConv(conv);
    if (!isMine({ from: f.from })) scheduleMarks();
    if (state.openId === conv.id) markRead(conv);
  }

  function onSent(f) {
    if (!f.cid) return;
    removeFromOutbox(f.cid);
    const conv = state.convs.get(f.conv);
    if (!conv) return;
    const m = conv.pending.get(f.cid);
    if (m) { m.sentAck = true; m.failed = false; if (f.ts) m.ts = f.ts; renderMessage(conv, m); }
  }

  function onReceipt(f) {
    const conv = state.convs.get(f.conv);
    if (!conv || typeof f.upto !== 'number') return;
    if (f.user === state.session.user) {
      // Another of my devices read or received it.
      if (f.kind === 'read') {
        conv.readSeq = Math.max(conv.readSeq, f.upto);
        conv.sentRead = Math.max(conv.sentRead, f.upto);
        if (f.upto >= conv.lastSeq && conv.unread) { conv.unread = 0; renderConvItem(conv); }
      } else {
        conv.sentDelivered = Math.max(conv.sentDelivered, f.upto);
      }
      return;
    }
    noteMark(conv, f.user, f.kind, f.upto, 0);
    refreshMyStatuses(conv);
  }

  function onChange(f, isDelete) {
    const conv = state.convs.get(f.conv);
    if (!conv || typeof f.target !== 'number') return;
    noteSeq(conv, f.seq);
    if (f.cid) removeFromOutbox(f.cid);
    const patch = isDelete ? { deleted: true, ts: f.ts } : { body: f.body || '', ts: f.ts };
    const m = conv.msgs.get(f.target);
    if (!m) {
      const old = conv.patches.get(f.target);
      if (!old || !old.deleted) conv.patches.set(f.target, patch);
      return;
    }
    applyPatch(m, patch);
    if (conv.lastMessage && conv.lastMessage.seq === m.seq) {
      conv.lastMessage = { seq: m.seq, from: m.from, ts: m.ts, body: m.body, deleted: m.deleted };
      if (conv.li) renderConvItem(conv);
    }
    if (state.editing && state.editing.conv === conv.id && state.editing.seq === m.seq && m.deleted) cancelEdit();
    if (m.el) renderMessage(conv, m);
    if (!isMine({ from: f.from })) scheduleMarks();
  }

  function onPresence(f) {
    if (!f.user) return;
    state.presence.set(f.user, { online: !!f.online, last_seen: f.last_seen || 0 });
    renderPresence();
  }

  function onMember(f) {
    const conv = state.convs.get(f.conv);
    if (!conv) { reloadListSoon(); return; }
    noteSeq(conv, f.seq);
    if (f.action === 'remove' && f.user === state.session.user) { dropConv(conv.id); return; }
    if (f.action === 'add' && !conv.members.includes(f.user)) conv.members.push(f.user);
    if (f.action === 'remove') conv.members = conv.members.filter((u) => u !== f.user);
    if (conv.li) renderConvItem(conv);
    if (state.openId === conv.id) renderChatHeader();
    loadPresence();
  }

  function onConvDeleted(f) {
    if (state.openId === f.conv) toast('This conversation was deleted.');
    dropConv(f.conv);
  }

  function onError(f) {
    if (f.cid) {
      removeFromOutbox(f.cid);
      for (const conv of state.convs.values()) {
        const m = conv.pending.get(f.cid);
        if (!m) continue;
        if (f.retry) {
          // Try the same frame again after a short pause (same cid: same event).
          setTimeout(() => { if (conv.pending.has(f.cid)) queueFrame({ t: 'send', conv: conv.id, cid: m.cid, body: m.body }, m.cid); }, 1000 + Math.random() * 2000);
        } else {
          m.failed = true;
          renderMessage(conv, m);
        }
        break;
      }
    }
    if (!f.retry || !f.cid) toast(f.message || f.code || 'The server refused a request.');
  }

  // ---------------------------------------------------------------- events
  el.authForm.addEventListener('submit', (e) => { e.preventDefault(); authenticate('login'); });
  el.registerBtn.addEventListener('click', () => authenticate('register'));
  el.logout.addEventListener('click', () => logout());
  el.newChatForm.addEventListener('submit', (e) => { e.preventDefault(); startDirect(el.newChatUser.value); });
  el.newGroupForm.addEventListener('submit', (e) => { e.preventDefault(); createGroup(el.groupTitle.value, el.groupMembers.value); });
  el.back.addEventListener('click', () => closeConv());
  el.editCancel.addEventListener('click', () => cancelEdit());

  function autoGrow() {
    el.composer.style.height = 'auto';
    el.composer.style.height = Math.min(160, el.composer.scrollHeight) + 'px';
  }

  el.composerForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = el.composer.value.replace(/\s+$/, '');
    if (!text.trim()) return;
    if (state.editing) submitEdit(text);
    else { typingStop(); sendMessage(text); }
    el.composer.value = '';
    if (state.openId) drafts.delete(state.openId);
    autoGrow();
  });
  el.composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); el.composerForm.requestSubmit(); }
    else if (e.key === 'Escape' && state.editing) { e.preventDefault(); cancelEdit(); }
  });
  el.composer.addEventListener('input', () => {
    autoGrow();
    if (!state.editing && state.openId) drafts.set(state.openId, el.composer.value);
    if (el.composer.value.trim()) typingInput(); else typingStop();
  });
  el.composer.addEventListener('blur', () => typingStop());

  el.messages.addEventListener('scroll', () => {
    const conv = state.openId && state.convs.get(state.openId);
    if (conv && el.messages.scrollTop < 120 && !conv.historyDone && !conv.loadingHistory && conv.historyLoaded) loadHistory(conv, false);
  }, { passive: true });

  document.addEventListener('visibilitychange', () => {
    if (pageVisible()) {
      const conv = state.openId && state.convs.get(state.openId);
      if (conv) markRead(conv);
      if (state.session && !state.ws) reconnectNow();
    } else {
      typingStop();
    }
  });
  window.addEventListener('online', () => reconnectNow());
  window.addEventListener('hashchange', () => {
    const id = convFromHash();
    if (id && id !== state.openId && state.convs.has(id)) openConv(id);
  });

  // ---------------------------------------------------------------- start
  const saved = loadSession();
  if (saved) { state.session = saved; scheduleRefresh(); startApp(); } else showAuth();
}());
