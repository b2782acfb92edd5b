from nfvlab.kernel.provenance import kernel_provenance, parse_release


def test_recipe_release_is_parsed() -> None:
    assert parse_release("6.1.192-nfvlab-iron-229ae841") == {"recipe": "iron", "recipe_hash8": "229ae841"}
    assert parse_release("6.1.192-nfvlab-my-recipe-0123abcd")["recipe"] == "my-recipe"


def test_stock_kernel_has_no_recipe() -> None:
    p = kernel_provenance("6.18.44-fc-v857")
    assert p == {"release": "6.18.44-fc-v857", "recipe": None, "recipe_hash8": None, "recipe_hash": None}


def test_running_kernel() -> None:
    import platform

    assert kernel_provenance()["release"] == platform.release()


def test_collect_records_the_kernel_recipe(tmp_path, monkeypatch) -> None:
    # collect() is what every result's provenance.json is made from: it must carry the recipe fields.
    import platform

    from nfvlab import provenance

    monkeypatch.setattr(platform, "release", lambda: "6.1.192-nfvlab-iron-229ae841")
    rec = provenance.collect(tmp_path / "s.yaml", "abc", None)
    assert rec["kernel"] == "6.1.192-nfvlab-iron-229ae841"
    assert rec["kernel_recipe"]["recipe"] == "iron"
    assert rec["kernel_recipe"]["recipe_hash8"] == "229ae841"
    assert rec["kernel_recipe"]["release"] == rec["kernel"]


def test_collect_on_a_stock_kernel_has_no_recipe(tmp_path) -> None:
    import platform

    from nfvlab import provenance

    rec = provenance.collect(tmp_path / "s.yaml", "abc", None)
    assert rec["kernel_recipe"] == kernel_provenance(platform.release())
    assert rec["kernel_recipe"]["release"] == platform.release()
