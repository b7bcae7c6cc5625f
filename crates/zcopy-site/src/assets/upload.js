// zcopy listing page: upload files dropped or picked into this directory. Each file
// is one raw PUT body (no multipart: the server splices it socket -> file), with an
// XHR progress bar. Where the page says WebDAV is on (data-webdav="1"): folders too
// (MKCOL, then their files), a new-folder button and delete buttons (DELETE).
// Served by the server itself (?asset=upload.js), so a CSP of script-src 'self' holds.
(function () {
  'use strict';
  var zu = document.getElementById('zu');
  if (!zu) return;
  var dav = zu.getAttribute('data-webdav') === '1';
  var input = document.getElementById('zu-files');
  var drop = document.getElementById('zu-drop');
  var bar = document.getElementById('zu-bar');
  var status = document.getElementById('zu-status');
  var queue = [], total = 0, sent = 0, ok = 0, failed = 0, busy = false;

  // Names already listed here (a file there is replaced only if the user agrees).
  var listed = {};
  var rows = document.querySelectorAll('tbody td.name a');
  for (var i = 0; i < rows.length; i++) {
    listed[decodeURIComponent(rows[i].getAttribute('href'))] = rows[i];
  }

  function enc(path) { return path.split('/').map(encodeURIComponent).join('/'); }
  function say(text, state) {
    status.textContent = text;
    zu.setAttribute('data-state', state);
  }

  function send(method, path, body, progress) {
    return new Promise(function (resolve) {
      var x = new XMLHttpRequest();
      x.open(method, enc(path));
      if (progress) x.upload.onprogress = function (e) { progress(e.loaded); };
      x.onload = function () { resolve(x.status); };
      x.onerror = x.onabort = function () { resolve(0); };
      x.send(body);
    });
  }

  function add(items) {
    for (var i = 0; i < items.length; i++) {
      var it = items[i];
      if (it.file && !it.dir && it.path.indexOf('/') < 0 && listed[it.path] &&
          !window.confirm(it.path + ' exists here. Replace it?')) continue;
      queue.push(it);
      if (it.file) total += it.file.size;
    }
    if (!busy) next();
  }

  function next() {
    var it = queue.shift();
    if (!it) {
      busy = false;
      bar.max = 1;
      bar.value = 1;
      if (failed) say(ok + ' uploaded, ' + failed + ' failed.', 'failed');
      else say('Uploaded ' + ok + (ok === 1 ? ' file.' : ' files.') + ' Reload to see.', 'done');
      return;
    }
    busy = true;
    bar.hidden = false;
    if (it.dir) {
      send('MKCOL', it.path + '/', null).then(function (st) {
        // 405: it exists already.
        if (st !== 201 && st !== 405) { failed++; say('MKCOL ' + it.path + ': ' + st, 'busy'); }
        next();
      });
      return;
    }
    var base = sent;
    say('Uploading ' + it.path + '\u2026', 'busy');
    send('PUT', it.path, it.file, function (n) {
      bar.max = total || 1;
      bar.value = base + n;
      say('Uploading ' + it.path + ' (' + Math.floor(100 * (base + n) / (total || 1)) + '%)', 'busy');
    }).then(function (st) {
      sent = base + it.file.size;
      bar.max = total || 1;
      bar.value = sent;
      if (st === 201 || st === 204) ok++;
      else { failed++; window.console.warn('PUT ' + it.path + ': ' + st); }
      next();
    });
  }

  input.addEventListener('change', function () {
    var items = [];
    for (var i = 0; i < input.files.length; i++) {
      items.push({ path: input.files[i].name, file: input.files[i] });
    }
    input.value = '';
    add(items);
  });

  // A dropped folder: MKCOL, then its entries (read in batches until none is left).
  function walk(entry, path, items) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (f) { items.push({ path: path, file: f }); resolve(); },
          function () { failed++; resolve(); });
        return;
      }
      items.push({ path: path, dir: true });
      var reader = entry.createReader(), all = [];
      (function read() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            var p = Promise.resolve();
            all.forEach(function (e) { p = p.then(function () { return walk(e, path + '/' + e.name, items); }); });
            p.then(resolve);
            return;
          }
          all = all.concat(Array.prototype.slice.call(batch));
          read();
        }, function () { failed++; resolve(); });
      })();
    });
  }

  document.addEventListener('dragover', function (e) {
    e.preventDefault();
    drop.classList.add('over');
  });
  document.addEventListener('dragleave', function () { drop.classList.remove('over'); });
  document.addEventListener('drop', function (e) {
    e.preventDefault();
    drop.classList.remove('over');
    var dt = e.dataTransfer, items = [], waits = [], skipped = 0;
    for (var i = 0; i < dt.items.length; i++) {
      var entry = dt.items[i].webkitGetAsEntry && dt.items[i].webkitGetAsEntry();
      if (entry && entry.isDirectory) {
        if (dav) waits.push(walk(entry, entry.name, items));
        else skipped++;
      } else if (dt.items[i].kind === 'file') {
        var f = dt.items[i].getAsFile();
        if (f) items.push({ path: f.name, file: f });
      }
    }
    Promise.all(waits).then(function () {
      if (skipped) say('Folders need WebDAV on the server (--webdav).', 'failed');
      add(items);
    });
  });

  if (!dav) return;
  var mkdir = document.getElementById('zu-mkdir');
  mkdir.hidden = false;
  mkdir.addEventListener('click', function () {
    var name = window.prompt('New folder name:');
    if (!name || name.indexOf('/') >= 0) return;
    send('MKCOL', name + '/', null).then(function (st) {
      if (st === 201) window.location.reload();
      else say('MKCOL ' + name + ': ' + st, 'failed');
    });
  });
  Object.keys(listed).forEach(function (name) {
    if (name === '../') return;
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'zu-del';
    b.textContent = 'delete';
    b.title = 'Delete ' + name;
    b.addEventListener('click', function () {
      if (!window.confirm('Delete ' + name + '?')) return;
      send('DELETE', name, null).then(function (st) {
        if (st === 204 || st === 200) window.location.reload();
        else say('DELETE ' + name + ': ' + st, 'failed');
      });
    });
    listed[name].parentNode.appendChild(b);
  });
})();
