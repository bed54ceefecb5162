"""The two seed workloads, sequential and on shoal.

1. The blog post "Parallel general functions using Dask": fetch one JSON
   document per day for 20 days with a for loop, ``map``, a
   ``multiprocessing`` pool, and ``delayed`` + ``compute`` with no set-up.
2. The tutorial "Parallelize your python code": futures and delayed on
   ``Client(n_workers=4)``, then scrape and clean 32 Stack Overflow listing
   pages into pandas DataFrames with ``client.submit``, ``client.map``, a
   lambda, ``delayed``, ``as_completed`` and ``dd.from_delayed``.

Both talk to a local server (``fake_web.py``) that answers like the real
sites, with 0.1 s of latency per request. Run: ``python examples/demo.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import timeit
from datetime import datetime

import pandas as pd
import requests
from bs4 import BeautifulSoup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shoal import Client, as_completed, compute, delayed  # noqa: E402

from fake_web import serve  # noqa: E402

BASE, _server = serve(latency=0.1)


# ---- the blog's function ---------------------------------------------------


def fetch_results(date):
    date_str = date.strftime("%Y-%m-%d")
    r = requests.get(f"{BASE}/intensity/date/{date_str}")
    return r.json()


# ---- the tutorial's functions ------------------------------------------------


def str_to_num(x):
    """Converts strings of the form '1.5k' or '3.1m' into numbers."""
    mult = {"k": 1e3, "m": 1e6}
    if ("k" in x) or ("m" in x):
        return int(float(x[:-1]) * mult[x[-1]])
    return int(float(x))


def clean_scraped_data(text, keyname=None):
    """Cleans the scraped data once in text format."""
    if keyname == "stats":
        return [str_to_num(t.split()[0]) for t in text.split("\n")]
    if keyname == "tags":
        return text.split("\n")
    return text


def extract_url_and_parse_html(url):
    """Given a listing url, gets the question summaries as clean dicts."""
    r = requests.get(url)
    if r.status_code not in range(200, 299):
        return []
    soup = BeautifulSoup(r.text, "html.parser")
    key_class_dict = {
        "title": ".s-post-summary--content-title",
        "stats": ".s-post-summary--stats",
        "tags": ".s-post-summary--meta-tags",
    }
    datas = []
    for q_el in soup.select(".s-post-summary"):
        q_data = {}
        for k, v in key_class_dict.items():
            el = q_el.select_one(v)
            text = "\n".join(s.strip() for s in el.stripped_strings)
            q_data[k] = clean_scraped_data(text, k)
        q_data["votes"], q_data["answers"], q_data["views"] = q_data["stats"]
        datas.append(q_data)
    return datas


def scrape_tag(page_num, tag="dask", query_filter="Newest", pagesize=50):
    url = f"{BASE}/questions/tagged/{tag}?tab={query_filter}&page={page_num}&pagesize={pagesize}"
    return pd.DataFrame(extract_url_and_parse_html(url))


def inc(x):
    time.sleep(0.2)  # the tutorial sleeps 1 s; 0.2 s keeps the demo short
    return x + 1


@delayed
def scrape_tag_delayed(page_num, tag="dask", query_filter="Newest", pagesize=50):
    return scrape_tag(page_num, tag, query_filter, pagesize)


def timed(label, fn):
    t1 = timeit.default_timer()
    out = fn()
    print(f"  {label:<34} {timeit.default_timer() - t1:6.2f} s")
    return out


def blog(params):
    print("Blog: 20 HTTP calls (0.1 s each)")
    fcn = fetch_results
    results_for = timed("for loop", lambda: [fcn(p) for p in params])
    timed("map", lambda: list(map(fcn, params)))
    with multiprocessing.Pool(8) as mp:
        results_mp = timed("multiprocessing.Pool(8)", lambda: mp.map(fcn, params))

    def with_delayed():
        # The blog's code, with `dask` replaced by shoal's names; no Client.
        results_dask = list(map(delayed(fcn), params))
        return compute(results_dask)[0]

    results_dask = timed("delayed + compute (no Client)", with_delayed)
    assert results_for == results_mp == results_dask


def tutorial_recap(client):
    print("Tutorial recap: inc sleeps 0.2 s")
    future = client.submit(inc, 1)
    assert future.result() == 2
    futures = client.map(inc, range(8))
    total = timed("client.submit(sum, client.map(inc))", client.submit(sum, futures).result)
    assert total == 36
    inc_d = delayed(inc)
    results = [inc_d(x) for x in range(8)]
    assert timed("sum of delayed inc, compute", sum(results).compute) == 36


def tutorial_scrape(client):
    print("Tutorial: scrape and clean 32 listing pages into DataFrames")
    pd_res = timed("sequential", lambda: [scrape_tag(page) for page in range(1, 33)])

    def with_submit():
        fut = [client.submit(scrape_tag, page_num) for page_num in range(1, 33)]
        return client.gather(fut)

    res = timed("client.submit + gather", with_submit)
    assert all(a.equals(b) for a, b in zip(res, pd_res))
    res_map = timed(
        "client.map + gather", lambda: client.gather(client.map(scrape_tag, range(1, 33)))
    )
    assert all(a.equals(b) for a, b in zip(res_map, pd_res))
    res_py = timed(
        "client.map(lambda) tag=python",
        lambda: client.gather(client.map(lambda p: scrape_tag(p, tag="python"), range(1, 33))),
    )
    print(res_py[0].head(3).to_string(max_colwidth=40))
    res_d = [scrape_tag_delayed(page) for page in range(1, 33)]
    (r,) = timed("delayed pages, compute", lambda: compute(res_d))
    assert all(a.equals(b) for a, b in zip(r, pd_res))

    def views_as_completed():
        tot_views = 0
        for future in as_completed(client.map(scrape_tag, range(15))):
            tot_views += future.result()["views"].sum()
        return tot_views

    tot = timed("as_completed, sum of views", views_as_completed)
    try:
        import dask.dataframe as dd
    except ImportError:
        print("  (dask.dataframe not installed: skipping dd.from_delayed)")
        return
    t15 = client.map(scrape_tag, range(15))
    test_del = dd.from_delayed(t15, meta=pd_res[0].head(0))
    tot_dd = timed("dd.from_delayed, views sum", test_del["views"].sum().compute)
    assert tot_dd == tot
    print(f"  total views over 15 pages: {tot}")


def main():
    blog(pd.date_range(datetime(2020, 1, 1), periods=20).tolist())
    t1 = timeit.default_timer()
    client = Client(n_workers=4)
    print(f"{'Client(n_workers=4) start':<36} {timeit.default_timer() - t1:6.2f} s   {client}")
    tutorial_recap(client)
    tutorial_scrape(client)
    t1 = timeit.default_timer()
    client.shutdown()
    print(f"{'client.shutdown()':<36} {timeit.default_timer() - t1:6.2f} s")


if __name__ == "__main__":
    main()
