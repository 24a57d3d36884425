"""The chat-ops webhook (Starlette under uvicorn) around ``rotation.chatops``.

app           the routes, the size guard and the 2.5 s answer deadline
handlers      one handler per platform: authenticate the raw bytes, parse, answer
ports         the chat use case's ports for one request, each write behind its replay guard
snapshot      the inventory and the chat secrets, reloaded when the file changes
status_cache  `status` answers shared by the requests of one short window
server        uvicorn in one or several processes (SO_REUSEPORT), supervised
protocol      the HTTP protocol's bounds on slow and greedy clients
"""
