"""The seed's Tornado application, for bench/run: /hello, /data (one
AsyncHTTPClient fetch, json.loads, {"data": ...}) and /multi (two fetches
in parallel, as the seed's `yield [f1, f2]`). One process, as the seed.

    python3 tornado_app.py PORT UPSTREAM_URL1 UPSTREAM_URL2
"""
import json
import sys

import tornado.httpclient
import tornado.ioloop
import tornado.web

PORT = int(sys.argv[1])
URL1, URL2 = sys.argv[2], sys.argv[3]


class HelloHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, world")


class DataHandler(tornado.web.RequestHandler):
    async def get(self):
        client = tornado.httpclient.AsyncHTTPClient()
        response = await client.fetch(URL1)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"data": json.loads(response.body)}))


class MultiHandler(tornado.web.RequestHandler):
    async def get(self):
        client = tornado.httpclient.AsyncHTTPClient()
        resp1, resp2 = await tornado.gen.multi([client.fetch(URL1),
                                                client.fetch(URL2)])
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"first": json.loads(resp1.body),
                               "second": json.loads(resp2.body)}))


if __name__ == "__main__":
    import tornado.gen  # noqa: F401  (tornado.gen.multi above)
    app = tornado.web.Application([
        (r"/hello", HelloHandler),
        (r"/data", DataHandler),
        (r"/multi", MultiHandler),
    ])
    app.listen(PORT, address="127.0.0.1")
    tornado.ioloop.IOLoop.current().start()
