-- pgbdr.lua: HAProxy keeps its own copy of pgbdr-agent's status.
--
-- A task polls the agents' compact endpoint (GET /compact) every
-- interval over one kept-alive HTTP/1.1 connection per agent, and keeps
-- the last good answer in memory. Routing then reads that copy: no
-- round trip to the agent per connection or request, unlike SPOE.
--
-- The fast path: the task also writes the copy into an HAProxy map
-- (PGBDR_LUA_MAP), which native converters read with no Lua at all:
--   str(write_node),map(FILE)    the write leader; no entry when none
--   str(best_node),map(FILE)     the serving node with the least lag
--   str(best_replica),map(FILE)  the same among the nodes that are not
--                                the write leader (duty "replica")
--   str(ready.NAME),map(FILE)    "1" when NAME is ready or degraded
--   str(weight.NAME),map(FILE)   NAME's weight while it serves
-- Entries go away when the copy ages out, so a lookup then finds
-- nothing (fail closed). FILE must exist when HAProxy starts (it may be
-- empty); the script changes HAProxy's copy in memory, never the file.
--
-- Sample fetches, for use_backend, use-server, acls or set-var. Each use
-- runs Lua once per connection or request, which costs far more than a
-- map lookup (see bench/RESULTS.md, "Lua routing"):
--   lua.pgbdr_write_node      the write leader's name, "" when none
--   lua.pgbdr_best_node       the serving node with the least lag, ""
--   lua.pgbdr_best_replica    the same, never the write leader, ""
--   lua.pgbdr_ready(NAME)     true when NAME is ready or degraded
--   lua.pgbdr_weight(NAME)    NAME's weight, 0..100 (0 when unknown)
-- Every one of them answers as if no node served once the status is
-- older than max_age: writes then find no server (fail closed).
-- A watchdog task applies that age limit to the map and the driven
-- servers every 100 ms, also while a poll waits on a hung agent.
--
-- Optionally the task also drives the servers of named backends, as
-- agent-check would, but from the same copy:
--   weight mode (reads): ready/degraded -> READY at the agent's weight
--     (a percentage of the configured weight), draining -> DRAIN,
--     down, unknown or stale -> MAINT;
--   write mode: only the write leader READY, every other server MAINT
--     with its sessions cut, so that no client keeps writing to an old
--     leader.
-- Servers are matched to nodes by name.
--
-- Configuration, read when the file is loaded (HAProxy 2.6 ignores
-- lua-load arguments, so set these with "setenv" in the global section
-- before lua-load):
--   PGBDR_LUA_AGENTS      host:port[,host:port...]  agents, in order of
--                         preference (default 127.0.0.1:9200)
--   PGBDR_LUA_INTERVAL    poll interval in ms (500)
--   PGBDR_LUA_TIMEOUT     one poll's time limit per agent in ms (1000)
--   PGBDR_LUA_MAX_AGE     ms: older status fails closed (3000); the age
--                         is the agent's own staleness plus the time
--                         since the answer came
--   PGBDR_LUA_DRIVE       backend:weight[,backend:write...] (empty: none)
--   PGBDR_LUA_MAP         the map file the config looks up (empty: none)
--
-- Why core.tcp and not core.httpclient: one kept-alive connection per
-- agent instead of a new one per poll, and the script reads the reply
-- line by line with its own bounds (line length, header count, body
-- size, total time), so a hostile or broken agent can neither make
-- HAProxy buffer without limit nor hold a poll for long: each read
-- waits at most the timeout, and the poll gives up once the timeout has
-- passed (the watchdog ages the copy meanwhile, and restarts a poll that
-- is stuck anyway: see restart_stuck_poll).
--
-- The compact format (see agent/render.c) is "key value" lines:
--   pgbdr-compact 1 / seq N / staleness_ms N / write_node NAME|- /
--   best_node NAME|- / ready_nodes N / node NAME STATE WEIGHT WRITE LAG
--   ... / end N
-- An answer that does not parse, or contradicts itself, is dropped
-- whole: the previous copy stays and ages.

local MAX_LINE = 512        -- bytes in a header or status line
local MAX_HEADERS = 32
local MAX_BODY = 64 * 1024  -- a compact status of 500 nodes fits easily
local MAX_NODES = 1024

local SERVING = { ready = true, degraded = true }
local STATES = { ready = true, degraded = true, draining = true, down = true }

-- Configuration -----------------------------------------------------------

local function env_ms(name, default)
	local v = os.getenv(name)
	if v == nil or v == "" then
		return default
	end
	local n = tonumber(v:match("^%s*(%d+)%s*$"))
	if n == nil or n <= 0 then
		error("pgbdr.lua: " .. name .. " must be a positive number of ms, not '" .. v .. "'")
	end
	return n
end

local function parse_agents(text)
	local list = {}
	for item in text:gmatch("[^,%s]+") do
		local host, port = item:match("^%[?([^%]]+)%]?:(%d+)$")
		if host == nil then
			error("pgbdr.lua: PGBDR_LUA_AGENTS: '" .. item .. "' is not host:port")
		end
		list[#list + 1] = { addr = item, host = host, port = tonumber(port),
		                    sock = nil, last_seq = nil, last_error = nil }
	end
	if #list == 0 then
		error("pgbdr.lua: PGBDR_LUA_AGENTS names no agent")
	end
	return list
end

local function parse_drive(text)
	local list = {}
	for item in (text or ""):gmatch("[^,%s]+") do
		local backend, mode = item:match("^([^:]+):(%a+)$")
		if backend == nil or (mode ~= "weight" and mode ~= "write") then
			error("pgbdr.lua: PGBDR_LUA_DRIVE: '" .. item .. "' is not backend:weight or backend:write")
		end
		list[#list + 1] = { backend = backend, mode = mode, applied = {} }
	end
	return list
end

local config = {
	agents = parse_agents(os.getenv("PGBDR_LUA_AGENTS") or "127.0.0.1:9200"),
	interval = env_ms("PGBDR_LUA_INTERVAL", 500),
	timeout = env_ms("PGBDR_LUA_TIMEOUT", 1000),
	max_age = env_ms("PGBDR_LUA_MAX_AGE", 3000),
	drive = parse_drive(os.getenv("PGBDR_LUA_DRIVE")),
	map = (os.getenv("PGBDR_LUA_MAP") or "") ~= "" and os.getenv("PGBDR_LUA_MAP") or nil,
}

-- State shared by the task and the fetches ---------------------------------
--
-- current is replaced whole, never edited, so a fetch sees one answer.
-- It is nil until the first good answer.
local current = nil
local fresh = false       -- what the task last logged: fresh or stale

local function now_ms()
	local t = core.now()
	return t.sec * 1000 + t.usec // 1000
end

local function log_warning(msg)
	core.log(core.warning, "pgbdr: " .. msg)
end

local function log_info(msg)
	core.log(core.info, "pgbdr: " .. msg)
end

-- The age of the copy: the agent's staleness when it answered, plus the
-- time since. Returns nil when there is no copy.
local function status_age(status, now)
	if status == nil then
		return nil
	end
	return status.staleness_ms + (now - status.received_ms)
end

-- The copy, or nil when there is none or it is too old.
local function usable_status()
	local status = current
	local age = status_age(status, now_ms())
	if age == nil or age > config.max_age then
		return nil
	end
	return status
end

-- Parsing -------------------------------------------------------------------

local function parse_compact(body)
	if #body > MAX_BODY or body:sub(-1) ~= "\n" then
		return nil, "body cut short or too long"
	end
	local st = { nodes = {}, n_nodes = 0 }
	local ended = false
	local first = true
	for line in body:gmatch("([^\n]*)\n") do
		if ended then
			return nil, "data after end"
		end
		if #line > MAX_LINE then
			return nil, "line too long"
		end
		if first then
			if line ~= "pgbdr-compact 1" then
				return nil, "not a pgbdr-compact 1 document"
			end
			first = false
		else
			local key, rest = line:match("^([%a_]+) (.*)$")
			if key == nil then
				return nil, "malformed line"
			elseif key == "seq" or key == "staleness_ms" or key == "ready_nodes" then
				local n = rest:match("^(%d+)$")
				if n == nil or #n > 15 then
					return nil, "bad " .. key
				end
				st[key] = tonumber(n)
			elseif key == "write_node" or key == "best_node" or key == "best_replica" then
				if not rest:match("^[%g]+$") then
					return nil, "bad " .. key
				end
				st[key] = rest ~= "-" and rest or ""
			elseif key == "node" then
				local name, state, weight, write, lag =
					rest:match("^([%g]+) (%a+) (%d+) ([01]) ([%d%-]+)$")
				weight = tonumber(weight)
				if name == nil or name == "-" or not STATES[state] or weight > 100
					or (lag ~= "-" and not lag:match("^%d+$")) then
					return nil, "bad node line"
				end
				if st.nodes[name] then
					return nil, "node " .. name .. " twice"
				end
				st.n_nodes = st.n_nodes + 1
				if st.n_nodes > MAX_NODES then
					return nil, "too many nodes"
				end
				st.nodes[name] = { state = state, weight = weight, write = write == "1",
				                   lag_bytes = tonumber(lag) }
			elseif key == "end" then
				if tonumber(rest:match("^(%d+)$")) ~= st.n_nodes then
					return nil, "node count mismatch"
				end
				ended = true
			end
			-- other keys: later versions of the agent may add them
		end
	end
	if not ended then
		return nil, "no end line"
	end
	for _, key in ipairs({ "seq", "staleness_ms", "write_node", "best_node" }) do
		if st[key] == nil then
			return nil, "no " .. key
		end
	end
	-- The write role is binary: the named leader must be a serving node
	-- flagged as leader, and no other node may carry the flag.
	for name, n in pairs(st.nodes) do
		if n.write and name ~= st.write_node then
			return nil, "node " .. name .. " flagged leader but write_node is '" .. st.write_node .. "'"
		end
	end
	if st.write_node ~= "" then
		local leader = st.nodes[st.write_node]
		if leader == nil or not leader.write or not SERVING[leader.state] then
			return nil, "write_node " .. st.write_node .. " is not a serving leader"
		end
	end
	if st.best_node ~= "" and (st.nodes[st.best_node] == nil
	                          or not SERVING[st.nodes[st.best_node].state]) then
		return nil, "best_node " .. st.best_node .. " is not serving"
	end
	-- best_replica came later: an agent without it names none
	st.best_replica = st.best_replica or ""
	local replica = st.nodes[st.best_replica]
	if st.best_replica ~= "" and (replica == nil or not SERVING[replica.state]
	                             or replica.write) then
		return nil, "best_replica " .. st.best_replica .. " is not a serving replica"
	end
	return st
end

-- Polling --------------------------------------------------------------------

-- The poll task, restarted by the watchdog when it is stuck: a read on
-- the agent's socket should give up after the timeout, but on HAProxy
-- 3.0 to 3.3 a read on a kept-alive connection can wait forever (seen
-- after an earlier connection was closed with a large reply unread).
-- Each task carries a generation; a stuck one that ever wakes up finds
-- it is no longer current and ends.
local poll_generation = 0
local poll_started_ms = nil -- when the current poll began, nil between polls

-- Close sock, and forget it if it is still the agent's connection (a
-- superseded poll task must not close its successor's).
local function close_agent(agent, sock)
	if sock == nil then
		return
	end
	if agent.sock == sock then
		agent.sock = nil
	end
	sock:close()
end

-- One GET /compact on the agent's kept-alive connection. Returns the body,
-- or nil and why. Any failure closes the connection.
local function fetch_compact(agent, generation)
	local deadline = now_ms() + config.timeout
	local function left()
		return deadline - now_ms()
	end
	local sock = agent.sock
	local function fail(why)
		close_agent(agent, sock)
		return nil, why
	end

	if sock == nil then
		sock = core.tcp()
		sock:settimeout(config.timeout / 1000)
		if not sock:connect(agent.host, agent.port) then
			sock:close()
			return nil, "cannot connect"
		end
		if generation ~= poll_generation then
			sock:close()
			return nil, "superseded"
		end
		agent.sock = sock
	end
	if not sock:send("GET /compact HTTP/1.1\r\nHost: pgbdr-agent\r\n\r\n") then
		return fail("cannot send")
	end

	local status_line = sock:receive("*l")
	if status_line == nil then
		return fail("no reply")
	end
	if #status_line > MAX_LINE then
		return fail("status line too long")
	end
	local code = status_line:match("^HTTP/1%.%d (%d%d%d)")
	if code ~= "200" then
		return fail("reply '" .. status_line:sub(1, 80) .. "'")
	end

	local length, keep_alive = nil, true
	for _ = 1, MAX_HEADERS + 1 do
		if left() <= 0 then
			return fail("timeout")
		end
		local line = sock:receive("*l")
		if line == nil then
			return fail("reply cut short in the headers")
		end
		if #line > MAX_LINE then
			return fail("header line too long")
		end
		if line == "" then
			if length == nil then
				return fail("no Content-Length")
			end
			if length > MAX_BODY then
				return fail("body of " .. length .. " bytes is over the " .. MAX_BODY .. " limit")
			end
			local body = length > 0 and sock:receive(length) or ""
			if body == nil or #body ~= length then
				return fail("reply cut short in the body")
			end
			if left() <= 0 then
				return fail("timeout")
			end
			if not keep_alive then
				close_agent(agent, sock)
			end
			return body
		end
		local name, value = line:match("^([^:]+):%s*(.-)%s*$")
		if name == nil then
			return fail("malformed header")
		end
		name = name:lower()
		if name == "content-length" then
			if length ~= nil or not value:match("^%d+$") or #value > 9 then
				return fail("bad Content-Length")
			end
			length = tonumber(value)
		elseif name == "connection" and value:lower() == "close" then
			keep_alive = false
		elseif name == "transfer-encoding" then
			return fail("Transfer-Encoding is not expected")
		end
	end
	return fail("too many headers")
end

-- Ask the agents in order; the first good and fresh answer wins.
local function poll_agents(generation)
	local errors = {}
	for _, agent in ipairs(config.agents) do
		local body, why = fetch_compact(agent, generation)
		if generation ~= poll_generation then
			return nil, "superseded"
		end
		local st
		if body ~= nil then
			st, why = parse_compact(body)
		end
		if st ~= nil and st.staleness_ms > config.max_age then
			why = "its status is " .. st.staleness_ms .. " ms old"
			st = nil
		end
		if st ~= nil then
			if agent.last_error ~= nil then
				log_info("agent " .. agent.addr .. " answers again")
				agent.last_error = nil
			end
			if agent.last_seq ~= nil and st.seq < agent.last_seq then
				log_info("agent " .. agent.addr .. " restarted (seq " .. agent.last_seq
				         .. " -> " .. st.seq .. ")")
			end
			agent.last_seq = st.seq
			st.agent = agent.addr
			st.received_ms = now_ms()
			return st
		end
		if why ~= agent.last_error then
			log_warning("agent " .. agent.addr .. ": " .. why)
			agent.last_error = why
		end
		errors[#errors + 1] = agent.addr .. ": " .. why
	end
	return nil, table.concat(errors, "; ")
end

-- Driving servers -------------------------------------------------------------

-- What one server should be: "ready" (with a weight), "drain" or "maint".
local function wanted(drive, name, status)
	if status == nil then
		return "maint"
	end
	local node = status.nodes[name]
	if drive.mode == "write" then
		if name == status.write_node then
			return "ready"
		end
		return "maint"
	end
	if node == nil or node.state == "down" then
		return "maint"
	elseif node.state == "draining" then
		return "drain"
	end
	return "ready", node.weight
end

-- Apply one server's wanted state, if it changed.
local function drive_server(drive, name, server, admin, weight)
	local key = admin .. (weight and (" " .. weight) or "")
	local was = drive.applied[name]
	if was == key then
		return
	end
	if admin == "ready" then
		if weight ~= nil then
			server:set_weight(weight .. "%")
		end
		server:set_ready()
	elseif admin == "drain" then
		server:set_drain()
	else
		server:set_maint()
		-- a write server that loses the role loses its sessions
		if drive.mode == "write" and was ~= nil and was ~= "maint" then
			server:shut_sess()
		end
	end
	drive.applied[name] = key
end

-- Two passes: every server that leaves service does so before any
-- server enters it, so a write backend never has two READY servers,
-- not even between two calls.
local function drive_servers(status)
	for pass = 1, 2 do
		for _, drive in ipairs(config.drive) do
			local backend = core.backends[drive.backend]
			if backend ~= nil then
				for name, server in pairs(backend.servers) do
					local admin, weight = wanted(drive, name, status)
					if (admin == "ready") == (pass == 2) then
						drive_server(drive, name, server, admin, weight)
					end
				end
			end
		end
	end
end

local function check_backends()
	for _, drive in ipairs(config.drive) do
		if core.backends[drive.backend] == nil then
			error("pgbdr.lua: PGBDR_LUA_DRIVE: no backend '" .. drive.backend .. "'")
		end
	end
end

-- The task ---------------------------------------------------------------------

-- The HAProxy map the script keeps for native lookups (PGBDR_LUA_MAP):
-- key -> value as wanted now; only changes are written.
local published = {}

local function map_entries(status)
	local want = {}
	if status == nil then
		return want
	end
	if status.write_node ~= "" then
		want.write_node = status.write_node
	end
	if status.best_node ~= "" then
		want.best_node = status.best_node
	end
	if status.best_replica ~= "" then
		want.best_replica = status.best_replica
	end
	for name, node in pairs(status.nodes) do
		if SERVING[node.state] then
			want["ready." .. name] = "1"
			want["weight." .. name] = tostring(node.weight)
		end
	end
	return want
end

local function publish_map(status)
	if config.map == nil then
		return
	end
	local want = map_entries(status)
	-- removals first: a leader change never shows two write nodes
	for key in pairs(published) do
		if want[key] == nil then
			core.del_map(config.map, key)
			published[key] = nil
		end
	end
	for key, value in pairs(want) do
		if published[key] ~= value then
			core.set_map(config.map, key, value)
			published[key] = value
		end
	end
end

local last_error = nil    -- why the last poll found no good answer
local warned = false      -- "no usable status" logged since the last fresh one
local last_write = ""

-- Bring the map and the driven servers in line with the copy, now.
-- Called after every poll and by the watchdog between polls, so that a
-- copy ages out on time even while a poll waits on a hung agent.
local function apply()
	local now = now_ms()
	local usable = usable_status()
	if usable ~= nil then
		if not fresh then
			log_info("status from agent " .. usable.agent)
		end
		warned = false
	elseif not warned and (current ~= nil or last_error ~= nil) then
		local age = status_age(current, now)
		log_warning("no usable status (" .. (age and ("last one " .. age .. " ms old")
		            or "none yet") .. ", limit " .. config.max_age .. " ms"
		            .. (last_error and ("; " .. last_error) or "; agents not answering")
		            .. "): no write node, driven servers in maintenance")
		warned = true
	end
	fresh = usable ~= nil
	publish_map(usable)
	drive_servers(usable)
	local write = usable and usable.write_node or ""
	if write ~= last_write then
		log_info("write node: '" .. last_write .. "' -> '" .. write .. "'")
		last_write = write
	end
end


local function poll_task(generation)
	while generation == poll_generation do
		local ok, err = pcall(function()
			poll_started_ms = now_ms()
			local st, why = poll_agents(generation)
			if generation ~= poll_generation then
				return
			end
			poll_started_ms = nil
			if st ~= nil then
				current = st
			end
			last_error = why
			apply()
		end)
		if not ok and generation == poll_generation then
			poll_started_ms = nil
			log_warning("poll failed: " .. tostring(err))
		end
		core.msleep(config.interval)
	end
end

local function start_poll_task()
	poll_generation = poll_generation + 1
	poll_started_ms = nil
	local generation = poll_generation
	core.register_task(function() poll_task(generation) end)
end

-- A poll may take one timeout per agent; twice that plus a second is
-- stuck. Its sockets are closed (which may wake the stuck read) and a
-- new task takes over with fresh connections.
local function restart_stuck_poll(now)
	local limit = 2 * config.timeout * #config.agents + 1000
	if poll_started_ms == nil or now - poll_started_ms <= limit then
		return
	end
	log_warning("poll stuck for " .. (now - poll_started_ms) .. " ms (limit " .. limit
	            .. " ms): restarting it on new connections")
	for _, agent in ipairs(config.agents) do
		local sock = agent.sock
		agent.sock = nil
		if sock ~= nil then
			pcall(function() sock:close() end)
		end
	end
	start_poll_task()
end

local function watchdog_task()
	local period = math.min(100, config.interval)
	while true do
		core.msleep(period)
		local ok, err = pcall(function()
			apply()
			restart_stuck_poll(now_ms())
		end)
		if not ok then
			log_warning("watchdog failed: " .. tostring(err))
		end
	end
end

-- Fetches -----------------------------------------------------------------------

local function fetch_write_node()
	local st = usable_status()
	return st and st.write_node or ""
end

local function fetch_best_node()
	local st = usable_status()
	return st and st.best_node or ""
end

local function fetch_best_replica()
	local st = usable_status()
	return st and st.best_replica or ""
end

local function fetch_ready(_, name)
	local st = usable_status()
	local node = st and name and st.nodes[name]
	return node ~= nil and SERVING[node.state] == true
end

local function fetch_weight(_, name)
	local st = usable_status()
	local node = st and name and st.nodes[name]
	if node == nil or not SERVING[node.state] then
		return 0
	end
	return node.weight
end

core.register_fetches("pgbdr_write_node", fetch_write_node)
core.register_fetches("pgbdr_best_node", fetch_best_node)
core.register_fetches("pgbdr_best_replica", fetch_best_replica)
core.register_fetches("pgbdr_ready", fetch_ready)
core.register_fetches("pgbdr_weight", fetch_weight)
core.register_init(check_backends)
poll_generation = 1
core.register_task(function() poll_task(1) end)
core.register_task(watchdog_task)
