/* linkage console: the little script each page needs. No libraries, no network but this console.
 * Text from the server is always set with textContent, never parsed as HTML. */
(function () {
  'use strict';
  const body = document.body;
  const project = body.dataset.project;
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');

  function showError(error) {
    const box = document.getElementById('error-box');
    box.textContent = String(error.message || error);
    box.classList.remove('hidden');
  }

  function request(method, url, data) {
    const options = {method: method, credentials: 'same-origin',
                     headers: {'X-CSRFToken': csrf, 'Accept': 'application/json'}};
    if (data !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(data);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {error: 'HTTP ' + response.status}; })
        .then(function (payload) {
          if (!response.ok) { throw new Error(payload.error || ('HTTP ' + response.status)); }
          return payload;
        });
    });
  }

  function element(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined && text !== null) { el.textContent = String(text); }
    if (className) { el.className = className; }
    return el;
  }

  const pick = document.getElementById('project-pick');
  if (pick) { pick.addEventListener('change', function () { pick.form.submit(); }); }

  // -- overview: start a run and watch it ---------------------------------------------------------
  function overview() {
    const form = document.getElementById('run-form');
    if (!form) { return; }
    const progress = document.getElementById('run-progress');
    const stage = document.getElementById('run-stage');
    const meter = document.getElementById('run-meter');
    const button = document.getElementById('run-start');
    function poll() {
      request('GET', '/api/runs/status').then(function (status) {
        if (status.status === 'idle' || status.project !== project) { return; }
        progress.classList.remove('hidden');
        if (status.status === 'running') {
          button.disabled = true;
          const share = status.total ? status.done / status.total : 0;
          stage.textContent = 'Running: ' + status.stage +
            (status.total ? ' ' + status.done + ' of ' + status.total : '');
          meter.style.width = Math.round(share * 100) + '%';
          window.setTimeout(poll, 400);
        } else if (status.status === 'done') {
          meter.style.width = '100%';
          stage.textContent = 'Run ' + status.summary.run + ' finished in ' + status.seconds +
            ' s: threshold ' + status.summary.threshold + ', ' + status.summary.groups + ' groups.';
          body.dataset.runFinished = String(status.summary.run);
          if (form.dataset.started) { window.setTimeout(function () { window.location.reload(); }, 900); }
        } else if (status.status === 'failed') {
          button.disabled = false;
          stage.textContent = 'The run failed.';
          showError(status.error);
        }
      }).catch(showError);
    }
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form).entries());
      button.disabled = true;
      request('POST', '/api/runs', data).then(function () {
        form.dataset.started = '1';
        poll();
      }).catch(function (error) { button.disabled = false; showError(error); });
    });
    poll();
  }

  // -- review queue: j/k to move, a/r to decide, n for a note; buttons for the mouse -------------
  function review() {
    const items = Array.from(document.querySelectorAll('#queue li.group'));
    const counter = document.getElementById('waiting-count');
    let current = 0;
    function select(index, focus) {
      if (!items.length) { return; }
      current = Math.max(0, Math.min(items.length - 1, index));
      items.forEach(function (item, i) { item.classList.toggle('selected', i === current); });
      if (focus !== false) { items[current].focus({preventScroll: true}); }
      items[current].scrollIntoView({block: 'nearest'});
    }
    function nextWaiting(from) {
      for (let i = from + 1; i < items.length; i += 1) {
        if (!items[i].classList.contains('decided')) { return i; }
      }
      return from;
    }
    function decide(item, decision) {
      if (!item || item.dataset.busy) { return; }
      item.dataset.busy = '1';
      const note = item.querySelector('.note').value;
      request('POST', '/api/review', {project: project, group: item.dataset.group,
                                      decision: decision, note: note})
        .then(function (result) {
          const wasWaiting = !item.classList.contains('decided');
          item.classList.remove('decided-accepted', 'decided-rejected');
          item.classList.add('decided', 'decided-' + result.decision);
          const state = item.querySelector('.state');
          state.textContent = result.decision + (result.note ? ': ' + result.note : '');
          state.dataset.state = result.decision;
          if (wasWaiting) { counter.textContent = String(Number(counter.textContent) - 1); }
          if (items[current] === item) { select(nextWaiting(current)); }
        })
        .catch(showError)
        .finally(function () { delete item.dataset.busy; });
    }
    document.addEventListener('keydown', function (event) {
      if (event.target.matches('input, textarea, select')) {
        if (event.key === 'Escape' || event.key === 'Enter') {
          event.preventDefault();
          event.target.blur();
          select(current);
        }
        return;
      }
      if (event.ctrlKey || event.metaKey || event.altKey || !items.length) { return; }
      if (event.key === 'j') { select(current + 1); }
      else if (event.key === 'k') { select(current - 1); }
      else if (event.key === 'a') { decide(items[current], 'accepted'); }
      else if (event.key === 'r') { decide(items[current], 'rejected'); }
      else if (event.key === 'n') { items[current].querySelector('.note').focus(); }
      else { return; }
      event.preventDefault();
    });
    items.forEach(function (item, index) {
      item.addEventListener('click', function (event) {
        if (!event.target.closest('button, input')) { select(index); }
      });
      item.querySelector('.note').addEventListener('focus', function () { select(index, false); });
      item.querySelectorAll('button[data-decision]').forEach(function (button) {
        button.addEventListener('click', function () {
          select(index, false);
          decide(item, button.dataset.decision);
        });
      });
    });
    select(0);
  }

  // -- network: draw, filter, click a broker for its neighbourhood, open a follow-up -----------
  function network() {
    const source = document.getElementById('network-data');
    if (!source) { return; }
    const data = JSON.parse(source.textContent);
    const svg = document.getElementById('network');
    const NS = 'http://www.w3.org/2000/svg';
    const byId = {};
    const edgesLayer = document.createElementNS(NS, 'g');
    const nodesLayer = document.createElementNS(NS, 'g');
    svg.appendChild(edgesLayer);
    svg.appendChild(nodesLayer);
    document.querySelectorAll('.swatch').forEach(function (label) {
      label.style.color = label.dataset.colour;
    });
    data.view.nodes.forEach(function (node) { byId[node.id] = node; });
    const edgeElements = data.view.edges.map(function (edge) {
      const a = byId[edge.source], b = byId[edge.target];
      const line = document.createElementNS(NS, 'line');
      line.setAttribute('x1', a.x); line.setAttribute('y1', a.y);
      line.setAttribute('x2', b.x); line.setAttribute('y2', b.y);
      line.setAttribute('class', 'edge');
      edgesLayer.appendChild(line);
      return {edge: edge, element: line};
    });
    const shapes = {};
    const nodeElements = data.view.nodes.map(function (node) {
      let shape;
      const colour = data.colours[node.agencies[0]] || '#777';
      if (node.kind === 'case') {
        shape = document.createElementNS(NS, 'rect');
        shape.setAttribute('x', node.x - 5); shape.setAttribute('y', node.y - 5);
        shape.setAttribute('width', 10); shape.setAttribute('height', 10);
        shape.setAttribute('fill', colour);
      } else {
        shape = document.createElementNS(NS, 'circle');
        const size = node.rank ? Math.max(4, 14 - Math.log2(node.rank) * 1.6) : 4;
        shape.setAttribute('cx', node.x); shape.setAttribute('cy', node.y);
        shape.setAttribute('r', size);
        shape.setAttribute('fill', node.agencies.length > 1 ? '#222' : colour);
      }
      shape.setAttribute('class', 'node node-' + node.kind);
      shape.setAttribute('data-id', node.id);
      const title = document.createElementNS(NS, 'title');
      title.textContent = node.id;
      shape.appendChild(title);
      shape.addEventListener('click', function (event) {
        event.stopPropagation();
        if (node.kind === 'entity') { openBroker(node.id); } else { showCase(node); }
      });
      nodesLayer.appendChild(shape);
      shapes[node.id] = shape;
      return {node: node, element: shape};
    });

    function highlight(ids) {
      svg.classList.toggle('focused', ids !== null);
      nodeElements.forEach(function (item) {
        item.element.classList.toggle('lit', ids !== null && ids.has(item.node.id));
      });
      edgeElements.forEach(function (item) {
        item.element.classList.toggle('lit', ids !== null && ids.has(item.edge.source) &&
                                       ids.has(item.edge.target));
      });
    }

    const details = document.getElementById('details');
    function showCase(node) {
      details.replaceChildren(element('h3', node.id, 'mono'),
        element('p', 'case of ' + node.agencies[0] + '; stages: ' + (node.stages.join(', ') || '-')));
      highlight(new Set([node.id]));
    }

    function openBroker(group) {
      document.querySelectorAll('#brokers tr.chosen').forEach(function (row) {
        row.classList.remove('chosen'); });
      const row = document.querySelector('#brokers tr[data-group="' + CSS.escape(group) + '"]');
      if (row) { row.classList.add('chosen'); }
      request('GET', '/api/brokers/' + encodeURIComponent(group) + '?project=' +
              encodeURIComponent(project)).then(function (found) {
        const panel = document.getElementById('broker-panel').content.cloneNode(true);
        panel.querySelector('.b-id').textContent = found.group;
        panel.querySelector('.b-why').textContent = found.rank
          ? 'Broker rank ' + found.rank + ': ' + found.explanation : 'Not ranked.';
        panel.querySelector('.b-type').textContent = found.entity_type;
        panel.querySelector('.b-conf').textContent =
          found.confidence === null ? '-' : found.confidence.toFixed(3);
        const matrix = panel.querySelector('.b-matrix');
        const head = element('tr');
        head.appendChild(element('th', 'agency'));
        head.appendChild(element('th', 'cases'));
        head.appendChild(element('th', 'by stage'));
        matrix.appendChild(head);
        Object.keys(found.cases_by_agency_stage).forEach(function (agency) {
          const perStage = found.cases_by_agency_stage[agency];
          const cases = found.cases.filter(function (c) { return c.agency === agency; }).length;
          const tr = element('tr');
          const name = element('th', agency);
          name.style.color = data.colours[agency] || '';
          tr.appendChild(name);
          tr.appendChild(element('td', cases));
          tr.appendChild(element('td', found.stage_columns.filter(function (stage) {
            return perStage[stage]; }).map(function (stage) {
            return stage + ' ' + perStage[stage]; }).join(', '), 'text'));
          matrix.appendChild(tr);
        });
        panel.querySelector('.b-neigh-note').textContent = found.cases.length + ' case(s), ' +
          found.neighbours.length + ' other entit' + (found.neighbours.length === 1 ? 'y' : 'ies') +
          ' in them.';
        const list = panel.querySelector('.b-neighbours');
        found.neighbours.slice(0, 12).forEach(function (other) {
          const item = element('li');
          const link = element('a', other.id, 'mono');
          link.href = '#';
          link.addEventListener('click', function (event) { event.preventDefault(); openBroker(other.id); });
          item.appendChild(link);
          item.appendChild(document.createTextNode(' ' + other.entity_type + ', ' +
            other.agencies.join(', ') + ', ' + other.shared_cases + ' shared case(s)' +
            (other.broker_rank ? ', rank ' + other.broker_rank : '')));
          list.appendChild(item);
        });
        const followUps = panel.querySelector('.b-follow-ups');
        if (!found.follow_ups.length) { followUps.appendChild(element('li', 'none yet', 'none')); }
        found.follow_ups.forEach(function (f) {
          followUps.appendChild(element('li', f.id + ': ' + f.requested_by + ' asked ' + f.agency +
                                        ' (' + f.status + ')'));
        });
        const form = panel.querySelector('.b-open');
        const opened = panel.querySelector('.b-opened');
        form.addEventListener('submit', function (event) {
          event.preventDefault();
          const note = form.querySelector('.note').value;
          request('POST', '/api/follow-ups', {project: project, group: found.group, note: note})
            .then(function (result) {
              opened.textContent = 'Opened ' + result.follow_ups.map(function (f) {
                return f.id + ' (' + f.agency + ')'; }).join(', ') + '.';
              opened.classList.add('ok');
              followUps.querySelectorAll('li.none').forEach(function (li) { li.remove(); });
              result.follow_ups.forEach(function (f) {
                followUps.appendChild(element('li', f.id + ': ' + f.requested_by + ' asked ' +
                                              f.agency + ' (' + f.status + ')'));
              });
            }).catch(showError);
        });
        details.replaceChildren(panel);
        const lit = new Set([found.group]);
        found.cases.forEach(function (c) { lit.add(c.id); });
        found.neighbours.forEach(function (n) { lit.add(n.id); });
        highlight(lit);
      }).catch(showError);
    }

    svg.addEventListener('click', function () { highlight(null); });
    document.querySelectorAll('#brokers tr.broker-row').forEach(function (row) {
      row.addEventListener('click', function () { openBroker(row.dataset.group); });
      row.addEventListener('keydown', function (event) {
        if (event.key === 'Enter') { openBroker(row.dataset.group); }
      });
    });

    function filter() {
      const agencies = new Set(Array.from(document.querySelectorAll('.f-agency:checked'))
        .map(function (el) { return el.value; }));
      const stageBoxes = document.querySelectorAll('.f-stage');
      const stages = new Set(Array.from(document.querySelectorAll('.f-stage:checked'))
        .map(function (el) { return el.value; }));
      const type = document.getElementById('f-type').value;
      function keep(nodeAgencies, nodeStages, kind, entityType) {
        let ok = nodeAgencies.some(function (a) { return agencies.has(a); });
        if (ok && stageBoxes.length && nodeStages.length) {
          ok = nodeStages.some(function (s) { return stages.has(s); });
        }
        if (ok && type && kind === 'entity') { ok = entityType === type; }
        return ok;
      }
      let visible = 0;
      const shown = {};
      nodeElements.forEach(function (item) {
        const node = item.node;
        const ok = keep(node.agencies, node.stages, node.kind, node.entity_type);
        item.element.classList.toggle('hidden', !ok);
        shown[node.id] = ok;
        if (ok) { visible += 1; }
      });
      edgeElements.forEach(function (item) {
        item.element.classList.toggle('hidden', !(shown[item.edge.source] && shown[item.edge.target]));
      });
      let rows = 0;
      document.querySelectorAll('#brokers tr.broker-row').forEach(function (row) {
        const ok = keep(row.dataset.agencies.split(','),
                        row.dataset.stages ? row.dataset.stages.split(',') : [], 'entity',
                        row.dataset.type);
        row.classList.toggle('hidden', !ok);
        if (ok) { rows += 1; }
      });
      document.getElementById('visible-count').textContent = visible + ' of ' +
        nodeElements.length + ' nodes shown, ' + rows + ' brokers listed';
    }
    document.querySelectorAll('.f-agency, .f-stage, #f-type').forEach(function (el) {
      el.addEventListener('change', filter);
    });

    let box = {x: 0, y: 0, w: 1000, h: 1000};
    function apply() { svg.setAttribute('viewBox', [box.x, box.y, box.w, box.h].join(' ')); }
    svg.addEventListener('wheel', function (event) {
      event.preventDefault();
      const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const rect = svg.getBoundingClientRect();
      const mx = box.x + (event.clientX - rect.left) / rect.width * box.w;
      const my = box.y + (event.clientY - rect.top) / rect.height * box.h;
      box = {x: mx - (mx - box.x) * factor, y: my - (my - box.y) * factor,
             w: box.w * factor, h: box.h * factor};
      apply();
    }, {passive: false});
    let drag = null;
    svg.addEventListener('mousedown', function (event) { drag = {x: event.clientX, y: event.clientY}; });
    window.addEventListener('mouseup', function () { drag = null; });
    window.addEventListener('mousemove', function (event) {
      if (!drag) { return; }
      const rect = svg.getBoundingClientRect();
      box.x -= (event.clientX - drag.x) / rect.width * box.w;
      box.y -= (event.clientY - drag.y) / rect.height * box.h;
      drag = {x: event.clientX, y: event.clientY};
      apply();
    });
    filter();
    window.linkageConsole = {nodes: nodeElements.length, openBroker: openBroker};
  }

  const pages = {overview: overview, review: review, network: network};
  if (pages[body.dataset.page]) { pages[body.dataset.page](); }
}());
